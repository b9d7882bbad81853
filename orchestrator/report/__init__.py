"""Reports of finished study directories.

The terminal report, report.html, comparisons between studies and their history, all read from
the study directory's files alone.
"""
