"""``nbgrader autograde`` for this course: hidden tests put back without a false tampering alarm.

nbgrader's ``generate_assignment`` stores each graded test cell in the gradebook *with* its
hidden tests (and the checksum of that source), then removes the hidden tests from the
student release. At autograde, its ``OverwriteCells`` compares every locked cell of a
submission with the gradebook's checksum; a cell that had hidden tests differs even when the
student never touched it, so nbgrader logs ``Attribute 'checksum' for cell ... has changed!``
and puts the stored source back (that is how the hidden tests return: nbgrader issue #1961).
A teacher reads the warning as tampering.

:class:`RestoreHiddenTests` is ``OverwriteCells`` that first recognises a cell that is exactly
the release's version of the stored one (the stored source with its hidden tests removed, by
nbgrader's own ``ClearHiddenTests``) and puts the stored source back silently. Any other change
to a locked cell is reported as before. ``segan assignments`` names it in the course's
``nbgrader_config.py`` (``c.Autograde.sanitize_preprocessors``), so a teacher's plain
``nbgrader autograde`` uses it. Imported by nbgrader only, never by ``segan`` itself.
"""
from __future__ import annotations

import copy

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, OverwriteCells


class RestoreHiddenTests(OverwriteCells):
    """nbgrader's ``OverwriteCells``, silent for a graded cell the student left as released."""

    def released_source(self, stored_source: str, cell: NotebookNode) -> str:
        """``stored_source`` as the release holds it: hidden tests removed, with the course's delimiters."""
        released = copy.deepcopy(cell)
        released.source = stored_source
        ClearHiddenTests(parent=self)._remove_hidden_test_region(released)  # nbgrader's own removal
        return released.source

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict,
                        cell_index: int) -> tuple[NotebookNode, ResourcesDict]:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None and utils.is_grade(cell) and utils.is_locked(cell):
            try:
                stored = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
            except MissingEntry:  # OverwriteCells reports it
                stored = None
            if (stored is not None and stored.locked and cell.source != stored.source
                    and cell.source == self.released_source(stored.source, cell)):
                cell.source = stored.source  # untouched: the hidden tests go back, the checksum matches
        return super().preprocess_cell(cell, resources, cell_index)
