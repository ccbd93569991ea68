"""The override dialog (issue 22): an override must change the grade or the disposition and say why; what is
missing is shown before Save, and a refused Save keeps every field as typed."""

from __future__ import annotations

from station.domain import Grade
from ui.widgets import OverrideDialog


def _dialog(qtbot, grade: str, save=None, flagged=False) -> OverrideDialog:
    dlg = OverrideDialog(grade, "restock", save=save, flagged=flagged)
    qtbot.addWidget(dlg)
    dlg.reason.setCurrentIndex(dlg.reason.findData("wrong_grade"))
    return dlg


def test_what_is_missing_is_shown_before_save(qtbot):
    dlg = _dialog(qtbot, "A")
    assert not dlg.error.isHidden() and "changes nothing" in dlg.error.text() and "comment" in dlg.error.text()
    dlg.grade.setCurrentIndex(dlg.grade.findData("B"))
    assert "changes nothing" not in dlg.error.text() and "comment" in dlg.error.text()
    dlg.comment.setText("scuff on the lid")
    assert dlg.error.isHidden() and dlg.problems() == []


def test_no_change_is_refused_even_with_a_comment_and_the_text_is_kept(qtbot):
    dlg = _dialog(qtbot, list(Grade)[0].value)
    dlg.comment.setText("grade was right, noting the dent")
    dlg.accept()
    assert dlg.result() != dlg.DialogCode.Accepted
    assert dlg.comment.text() == "grade was right, noting the dent"
    assert "changes nothing" in dlg.error.text()


def test_a_change_without_a_comment_is_refused(qtbot):
    grades = [g.value for g in Grade]
    dlg = _dialog(qtbot, grades[0])
    dlg.grade.setCurrentIndex(dlg.grade.findData(grades[1]))
    dlg.accept()
    assert dlg.result() != dlg.DialogCode.Accepted and "comment" in dlg.error.text()
    dlg.comment.setText("dent under the label")
    dlg.accept()
    assert dlg.result() == dlg.DialogCode.Accepted


def test_a_new_disposition_alone_is_a_change(qtbot):
    dlg = _dialog(qtbot, "B")
    dlg.disposition.setCurrentIndex(dlg.disposition.findData("refurbish"))
    dlg.comment.setText("hinge loose")
    dlg.accept()
    assert dlg.result() == dlg.DialogCode.Accepted


def test_flagged_items_point_to_approve_when_nothing_changes(qtbot):
    dlg = _dialog(qtbot, "B", flagged=True)
    assert "approval" in dlg.error.text()


def test_a_failed_save_keeps_the_dialog_open_with_what_was_typed(qtbot):
    calls = []

    def save(values, done, failed):
        calls.append(values)
        if len(calls) == 1:
            failed("order ORD-1 was decided again since (by boss): reload and decide on the latest record")
        else:
            done()

    dlg = _dialog(qtbot, "A", save=save)
    dlg.show()
    dlg.grade.setCurrentIndex(dlg.grade.findData("C"))
    dlg.comment.setText("teat cracked")
    dlg.accept()
    assert dlg.isVisible() and dlg.result() != dlg.DialogCode.Accepted
    assert "Not saved: order ORD-1 was decided again" in dlg.error.text()
    assert (dlg.grade.currentData(), dlg.comment.text()) == ("C", "teat cracked")
    assert calls[0] == ("wrong_grade", "teat cracked", Grade.C, calls[0][3])
    dlg.accept()
    assert dlg.result() == dlg.DialogCode.Accepted and len(calls) == 2
