"""The alert filter operator: reconciles AlertFilter and FilterPool custom resources."""

GROUP = "alerts.lsst.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
