"""Reading a store back as the report sees it, for the experiments' report tests."""

from layer_sim.report.sections import build_report
from layer_sim.store import Store


def report_section(path, title):
    """The report of the store at ``path`` and its one section titled ``title``."""
    with Store(path) as s:
        doc = build_report(s)
    (sec,) = [sec for sec in doc.sections if sec.title == title]
    return doc, sec
