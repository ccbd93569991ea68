"""Every visible string has a zh_CN translation, and the language switches at runtime."""

from __future__ import annotations

import re

from PyQt6.QtWidgets import (QAbstractButton, QComboBox, QGroupBox, QLabel, QLineEdit, QTableWidget, QTabWidget,
                             QWidget)

from station.users import OVERRIDE_REASONS
from station.users import Role, User
from tests.ui_support import WAIT_MS, login, make_window, scan_and_capture, seed_flagged
from ui import i18n
from ui.i18n_zh import ZH
from ui.scan import format_rma
from station.domain import ReturnReason, ReturnRequest

# Tokens that are the same in both languages: rule ids, ids and codes with digits, units, grade letters.
# Config paths in validation problems ("quality.max_mean:") are data too: they name the key in the file; so are
# names of products and standards (ColorChecker, sRGB, ArUco, ONNX, OpenCV, Modbus RTU), kept as they are in Chinese.
_DATA = re.compile(r"[A-Z]+(?:-[A-Z0-9]+)+|\S*\d\S*|ΔE00|SKU|PIN|F\d+|Esc|ColorChecker Classic|sRGB|ArUco|ONNX|OpenCV|Modbus RTU|PLC|URL|\b[A-D]\b|\b[a-z_]+(?:\.[a-z_]+)+:")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def _is_data(w: QWidget) -> bool:
    while w is not None:
        if w.property("i18n_data"):
            return True
        w = w.parentWidget()
    return False


def visible_strings(root: QWidget) -> list[tuple[str, str]]:
    """(where, text) for every string a user can see or hover: texts, placeholders, titles, tooltips,
    tab texts, combo items, table headers, chart titles and axis categories."""
    out = []
    widgets = [root, *root.findChildren(QWidget)]
    for w in widgets:
        if not w.isVisibleTo(root) and w is not root:
            continue
        where = f"{type(w).__name__}:{w.objectName()}"
        if _is_data(w):
            continue
        texts = [w.toolTip(), w.windowTitle() if w.isWindow() else ""]
        if isinstance(w, (QLabel, QAbstractButton)):
            texts.append(w.text())
        if isinstance(w, QLineEdit):
            texts.append(w.placeholderText())
        if isinstance(w, QGroupBox):
            texts.append(w.title())
        if isinstance(w, QTabWidget):
            texts += [w.tabText(i) for i in range(w.count())] + [w.tabToolTip(i) for i in range(w.count())]
        if isinstance(w, QComboBox):
            # items that show their own value (brand or streamer ids) are data
            texts += [w.itemText(i) for i in range(w.count()) if w.itemText(i) != w.itemData(i)]
        if isinstance(w, QTableWidget):
            texts += [w.horizontalHeaderItem(c).text() for c in range(w.columnCount()) if w.horizontalHeaderItem(c)]
        if hasattr(w, "categories") and type(w).__name__ == "BarChart":
            texts += [c for c in w.categories if not re.fullmatch(r"\d\d:00|[a-z0-9-]+", c)]  # hours, brand ids
        out += [(where, t) for t in texts if t]
    return out


def untranslated(root: QWidget) -> list[tuple[str, str]]:
    return [(where, t) for where, t in visible_strings(root) if _LATIN_WORD.search(_DATA.sub(" ", t))]


def test_every_visible_string_is_translated_to_zh_cn(qtbot, data_dir):
    seed_flagged(data_dir, "ORD-I-1")
    win = make_window(qtbot, data_dir)
    try:
        login(qtbot, win, "supervisor", "2222")
        scan_and_capture(qtbot, win.bench, format_rma(ReturnRequest(
            "ORD-I-2", "TOY-BEAR-S", ReturnReason.QUALITY_ISSUE, "U-I-2", "live", "host-wang", None, None)))
        win.tabs.setCurrentWidget(win.queue)
        qtbot.waitUntil(lambda: win.queue.select_order("ORD-I-1"), timeout=WAIT_MS)
        qtbot.waitUntil(lambda: win.queue.evidence is not None, timeout=WAIT_MS)
        win.dashboard.refresh()
        qtbot.waitUntil(lambda: win.dashboard.stats is not None and win.dashboard.stats.total_items == 2,
                        timeout=WAIT_MS)
        english = untranslated(win)
        assert english, "the English UI must show Latin text, or the check below proves nothing"

        win.set_language("zh_CN")
        pages = [win]
        for i in range(win.tabs.count()):  # every page, as it looks when it is the current tab
            win.tabs.setCurrentIndex(i)
            left = untranslated(win)
            assert left == [], f"untranslated on tab {i}: {left}"
        win.tabs.setCurrentWidget(win.bench)
        win.bench.open_override()
        qtbot.waitUntil(lambda: win.bench.override_dialog is not None, timeout=WAIT_MS)
        pages.append(win.bench.override_dialog)
        assert untranslated(win.bench.override_dialog) == []
        win.bench.override_dialog.reject()
        win.ctx.set_user(None)  # the login page
        assert untranslated(win) == []
        assert i18n.missing() == set(), f"strings without a zh_CN entry: {sorted(i18n.missing())}"
        assert win.tabs.tabText(0) == "质检台"

        win.set_language("en")
        assert win.tabs.tabText(0) == "Bench" and win.login.button.text() == "Log in"
    finally:
        i18n.set_language("en")


def test_catalogue_covers_every_display_name():
    names = i18n.all_source_strings() | {i18n._NAMES["override"][c] for c in OVERRIDE_REASONS}
    assert sorted(n for n in names if n not in ZH) == []


def test_checker_flags_english_and_ignores_data(qtbot):
    w = QWidget()
    qtbot.addWidget(w)
    QLabel("订单 ORD-01-00001 · L-SWAP：调包 · ΔE00 2.1 · 等级 B", w)
    assert untranslated(w) == []
    QLabel("Approve", w)
    assert [t for _, t in untranslated(w)] == ["Approve"]


def test_settings_calibration_and_status_bar_are_translated(qtbot, data_dir, tmp_path):
    """The admin-only screens, filled: settings with a problem at each kind of field, calibration results
    with a saved profile and lighting drift."""
    import cv2
    import numpy as np

    from calibration.chart import render_chart_scene

    chart = tmp_path / "chart.png"
    cv2.imwrite(str(chart), render_chart_scene(np.random.default_rng(5), illuminant_gain_rgb=(1.2, 1.0, 0.75)))
    win = make_window(qtbot, data_dir)
    try:
        win.ctx.set_user(User("boss", Role.ADMIN))
        cal, settings = win.calibration, win.settings
        cal.load_chart_file(chart)
        qtbot.waitUntil(lambda: cal.colour is not None, timeout=WAIT_MS)
        cal.save_profile()
        qtbot.waitUntil(lambda: cal.saved_path is not None, timeout=WAIT_MS)
        cal.check_quality()
        qtbot.waitUntil(lambda: cal.quality is not None, timeout=WAIT_MS)
        assert cal.quality.level_drift  # the drift lines are on screen for the walk below
        qtbot.waitUntil(lambda: settings.loaded, timeout=WAIT_MS)
        for key, value in (("quality.max_mean", "999"), ("quality.min_mean", "dark"),
                           ("comparer.identity_threshold", "-1"), ("conveyor.type", "modbus")):
            settings.set_value(key, value)
        settings.save()
        qtbot.waitUntil(lambda: len(settings.problems) == 4, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: win.station_status is not None, timeout=WAIT_MS)
        win._progress("Exporting evidence", 1, 3)  # as a long export shows it
        assert untranslated(win), "the English UI must show Latin text, or the check below proves nothing"

        win.set_language("zh_CN")
        for page in (cal, settings):
            win.tabs.setCurrentWidget(page)
            left = untranslated(win)
            assert left == [], f"untranslated on {page.objectName()}: {left}"
        assert settings.field_problems["quality.max_mean"].text() == "quality.max_mean: 不得大于 255"
        assert win.progress_label.text() == "正在导出证据包"
        assert i18n.missing() == set(), f"strings without a zh_CN entry: {sorted(i18n.missing())}"
    finally:
        i18n.set_language("en")


def _rule_ids(node) -> set[str]:
    """Every ``id`` of a rule anywhere in a parsed rules file."""
    if isinstance(node, dict):
        return ({node["id"]} if isinstance(node.get("id"), str) else set()).union(*map(_rule_ids, node.values()))
    if isinstance(node, list):
        return set().union(*map(_rule_ids, node)) if node else set()
    return set()


def test_every_finding_kind_and_every_shipped_rule_has_chinese_text():
    """A new finding kind in station/domain.py or a new rule in default_rules.toml without zh text fails here."""
    import tomllib
    from pathlib import Path

    import station
    from station.domain import FINDING_KINDS
    from ui.i18n_zh import RULES_ZH

    finding_names = i18n._NAMES["finding"]
    assert sorted(k for k in FINDING_KINDS if k not in finding_names) == []
    assert sorted(k for k in FINDING_KINDS if finding_names[k] not in ZH) == []
    rules = tomllib.loads((Path(station.__file__).parent / "rules" / "default_rules.toml").read_text())
    ids = _rule_ids(rules)
    assert len(ids) > 30 and "G-CLEAN" in ids  # the walk found the rules
    # and the ids the engine, the pipeline and the store add themselves
    ids |= {"R-NO-ALLOWED-DISPOSITION", "R-LOW-CONFIDENCE", "Q-POOR-CAPTURE", "OVERRIDE", "OVERRIDE-BOXES"}
    assert sorted(i for i in ids if i not in RULES_ZH) == []
    i18n.set_language("zh_CN")
    try:
        assert i18n.rule_text("G-UNSEEN-DAMAGE: differs from how this SKU looks") == \
            "G-UNSEEN-DAMAGE：" + RULES_ZH["G-UNSEEN-DAMAGE"]
        assert i18n.name("finding", "uncertain_defect") == ZH["Uncertain detection (below threshold)"]
    finally:
        i18n.set_language("en")


def test_switching_to_chinese_at_run_time_keeps_the_decision_and_translates_it(qtbot, data_dir):
    """A decided infant-feeding item with findings: after the switch the decision panel, the per-view
    findings, the reference caption and the reason are all still there, in Chinese."""
    win = make_window(qtbot, data_dir)
    try:
        login(qtbot, win, "supervisor", "2222")
        bench = win.bench
        from ui.screenshots import BENCH_STORY

        win.ctx._next_sim = BENCH_STORY  # the simulated story "kettle box crushed, kettle dented"
        bench.next_simulated()
        rma = bench.scan.text()
        bench.scan.clear()
        scan_and_capture(qtbot, bench, rma)
        findings = {v: t.caption.text() for v, t in bench.tiles.items()}
        assert any("\n1. " in c for c in findings.values()), "the kettle story should show detections"
        win.set_language("zh_CN")
        assert bench.decision.isVisible() and bench.grade.text() and bench.disposition.text().startswith("处置：")
        zh = {v: t.caption.text() for v, t in bench.tiles.items()}
        assert [c.count("\n") for c in zh.values()] == [c.count("\n") for c in findings.values()]
        assert any("包装破损" in c or "凹陷" in c for c in zh.values())
        win.set_language("en")
        bench.accept_item()
        qtbot.waitUntil(lambda: bench.state == "idle", timeout=WAIT_MS)
        scan_and_capture(qtbot, bench, format_rma(ReturnRequest(
            "ORD-I-4", "BTL-FEED-240", ReturnReason.QUALITY_ISSUE, "U-I-4", "live", "host-wang", None, None)))
        before = {"grade": bench.grade.text(), "disposition": bench.disposition.text(), "rules": bench.rules.text(),
                  "reference": bench.reference.caption.text(), "reason": bench.info_values["reason"].text()}
        assert before["reference"].startswith("Category: Infant feeding") and "Flags: hygiene" in before["reference"]
        assert before["reason"] == "Quality issue" and before["rules"] and before["disposition"]

        win.language.setCurrentIndex(win.language.findData("zh_CN"))  # the switch a user makes, at the top
        assert bench.state == "decided" and bench.decision.isVisible()
        assert bench.grade.text() == before["grade"]
        assert bench.disposition.text().startswith("处置：")
        assert bench.rules.text() and "：" in bench.rules.text().splitlines()[0]
        assert bench.reference.caption.text().startswith("品类：婴儿喂养") and "标记：卫生敏感" in \
            bench.reference.caption.text()
        assert bench.info_values["reason"].text() == "质量问题"
        assert all(t.caption.text().startswith("图像质量") for t in bench.tiles.values())
        assert untranslated(win) == []
    finally:
        i18n.set_language("en")
