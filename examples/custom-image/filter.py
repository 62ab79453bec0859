"""A filter that imports its group's own module (snlc), which only the group's image has: its
AlertFilter names that image in spec.image (alertfilter.yaml beside this file)."""

import snlc


def rising_source(alert):
    src = alert["diaSource"]
    history = [p["psFlux"] for p in alert["prv_diaSources"] or []]
    return snlc.rising([*history, src["psFlux"]])
