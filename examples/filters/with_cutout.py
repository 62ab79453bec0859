"""Significant detections that carry their difference cutout (function style).

It reads ``cutoutDifference``, a cutout: the operator runs it on the pool's full stream, while the
other examples, which read no cutout, run on the lean stream (their status.inputTopic says which).
"""


def with_cutout(alert):
    cutout = alert["cutoutDifference"]
    return cutout is not None and len(cutout) > 0 and alert["diaSource"]["snr"] > 6
