"""A filter with a syntax error, to show how it is reported (line 6, column 17)."""


def broken(alert):
    # the closing bracket is missing
    return alert["diaSource"["snr"] > 5
