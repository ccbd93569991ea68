"""Big, readable type and the colour cues (amber = manual review, red = retake, green = OK)."""

STYLE = """
QWidget { font-size: 15pt; }
QLineEdit#scan { font-size: 22pt; padding: 6px; }
QLabel#prompt { font-size: 20pt; font-weight: bold; padding: 8px; border-radius: 6px; background: #eef2f7; }
QLabel#prompt[state="bad"] { background: #f8d7da; color: #721c24; }
QLabel#prompt[state="ok"] { background: #d4edda; color: #155724; }
QLabel#prompt[state="review"] { background: #ffc107; color: #000; }
QLabel[state="bad"] { color: #b00020; font-weight: bold; }
QLabel[state="ok"] { color: #1e7e34; }
QLabel#grade { font-size: 64pt; font-weight: bold; min-width: 90px; }
QLabel#disposition { font-size: 20pt; font-weight: bold; }
QLabel#reviewBanner { font-size: 20pt; font-weight: bold; color: #000; }
QFrame#decision { border: 2px solid #c8ced6; border-radius: 8px; }
QFrame#decision[review="true"] { background: #ffe08a; border: 4px solid #ff9800; }
QLabel#tileTitle, QLabel#chartTitle, QLabel#sectionTitle { font-weight: bold; }
QLabel#tileImage { background: #222; }
QLabel#keys { color: #555; font-size: 12pt; }
QLabel#title { font-size: 18pt; font-weight: bold; }
QLabel#loginError { color: #b00020; font-weight: bold; }
QLabel#summary { font-size: 17pt; font-weight: bold; }
QLabel#driftBanner { background: #f8d7da; color: #721c24; font-weight: bold; padding: 6px; border-radius: 6px; }
QPushButton { padding: 6px 14px; }
QTableWidget { font-size: 13pt; }
QStatusBar QLabel, QStatusBar QProgressBar { font-size: 12pt; }
QLabel#hardwareStatus[state="bad"] { color: #fff; background: #b00020; font-weight: bold; padding: 0 6px; }
QLabel#fieldProblem { font-size: 13pt; }
"""
