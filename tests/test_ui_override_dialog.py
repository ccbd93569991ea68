"""The override dialog refuses a no-op "wrong grade" override (issue 22)."""

from __future__ import annotations

from station.domain import Grade
from ui.widgets import OverrideDialog


def _dialog(qtbot, grade: str) -> OverrideDialog:
    dlg = OverrideDialog(grade, "restock")
    qtbot.addWidget(dlg)
    dlg.reason.setCurrentIndex(dlg.reason.findData("wrong_grade"))
    return dlg


def test_wrong_grade_with_same_grade_and_no_comment_is_refused(qtbot):
    grade = list(Grade)[0].value
    dlg = _dialog(qtbot, grade)
    dlg.accept()
    assert dlg.result() != dlg.DialogCode.Accepted
    assert not dlg.error.isHidden() and dlg.error.text()


def test_wrong_grade_with_a_comment_or_new_grade_is_accepted(qtbot):
    grades = [g.value for g in Grade]
    dlg = _dialog(qtbot, grades[0])
    dlg.comment.setText("grade was right, noting the dent")
    dlg.accept()
    assert dlg.result() == dlg.DialogCode.Accepted
    dlg2 = _dialog(qtbot, grades[0])
    dlg2.grade.setCurrentIndex(dlg2.grade.findData(grades[1]))
    dlg2.accept()
    assert dlg2.result() == dlg2.DialogCode.Accepted
