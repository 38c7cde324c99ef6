"""Per-iteration metrics as CSV in the save folder (rank 0 only)."""
import csv
import os


class CSVLogger:
    """Appends one row per call; on resume keeps only the rows up to the resumed iteration
    (those of a checkpoint's interrupted epoch after it are written again, not duplicated)."""

    def __init__(self, path, resume_iteration=None):
        self.path = path
        self.fields = None
        if resume_iteration is not None and os.path.isfile(path):
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(float(r["iteration"])) <= resume_iteration]
            self.fields = list(rows[0].keys()) if rows else None
            self._rewrite(rows)
        elif os.path.exists(path):
            os.remove(path)

    def _rewrite(self, rows):
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="") as handle:
            if self.fields:
                writer = csv.DictWriter(handle, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, self.path)

    def log(self, row):
        new_file = self.fields is None
        if new_file:
            self.fields = list(row.keys())
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            if new_file:
                writer.writeheader()
            writer.writerow(row)


def read_log(path):
    """The rows of a CSV log as dicts of floats (for tests and plots)."""
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
