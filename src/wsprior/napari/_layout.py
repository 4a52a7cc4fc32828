"""Dock layout that fits small screens: the parameter form scrolls (Qt's QScrollArea, through
magicgui's ``scrollable`` container) while Run / Cancel, the progress bar and the status line stay
in view below it; the status line is one line, elided to the dock's width (superqt's
QElidingLabel, as napari uses), instead of widening or heightening the dock."""
from __future__ import annotations

from magicgui.widgets import Container, Label
from qtpy.QtWidgets import QComboBox, QFrame, QSizePolicy
from superqt import QElidingLabel

FORM_MIN_HEIGHT = 56
"""Smallest height of the scrolling form (px): a few fields stay visible in a crowded dock."""
COMBO_MIN_CHARACTERS = 12
"""Choice lists are at least this many characters wide, and no wider than the dock: a long
choice ("ws — whitened score (structured noise)") must not widen the dock."""


class ScrollForm(Container):
    """A labelled, vertically scrolling magicgui container that can be nested or docked.

    magicgui puts a scrollable container's inner widget (``native``) into a parent layout or a
    napari dock, which would leave its QScrollArea behind; here ``native`` is the scroll area
    itself (magicgui's ``root_native_widget``)."""

    def __init__(self, **kwargs):
        super().__init__(scrollable=True, labels=True, **kwargs)
        area = self.root_native_widget
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setMinimumHeight(FORM_MIN_HEIGHT)

    @property
    def native(self):
        return self.root_native_widget

    def insert(self, key: int, widget) -> None:
        """Insert ``widget``; its choice lists and notes give way to the dock's width instead
        of setting it (set before napari's style sizes them)."""
        super().insert(key, widget)
        native = widget.native
        for combo in [native, *native.findChildren(QComboBox)]:
            if isinstance(combo, QComboBox):
                combo.setSizeAdjustPolicy(
                    QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
                combo.setMinimumContentsLength(COMBO_MIN_CHARACTERS)

    @property
    def content(self):
        """The widget inside the scroll area (the one holding the form's layout)."""
        return self.root_native_widget.widget()

    def fit_width_to_content(self) -> None:
        """No horizontal scrolling: the area is as wide as its fields need (call once the
        napari style has set the fonts) plus the vertical scroll bar."""
        area = self.root_native_widget
        bar = area.verticalScrollBar().sizeHint().width()
        area.setMinimumWidth(self.content.minimumSizeHint().width() + bar)

    def align_labels(self) -> None:
        """One label column: magicgui sizes the labels in the default font but napari's style
        draws them larger, so long labels pushed their fields to the right."""
        rows = [row for row in (w._labeled_widget() for w in self) if row is not None]
        if rows:
            widest = max(row._label_widget.native.sizeHint().width() for row in rows)
            for row in rows:
                row.label_width = widest


class StatusLine:
    """One line of status text under the form, ``value`` as on a magicgui Label: elided to the
    dock's width, the whole text in its tooltip (a wrapping label would make the dock taller
    for good: Qt sizes it for its narrowest width)."""

    def __init__(self, value: str = "ready"):
        self.native = QElidingLabel()
        self.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.native.setContentsMargins(6, 0, 6, 4)
        self.value = value

    @property
    def value(self) -> str:
        return self.native.text()

    @value.setter
    def value(self, text: str) -> None:
        self.native.setText(text)
        self.native.setToolTip(text)


def note(name: str, label: str = "", value: str = "") -> Label:
    """A line of explanation in the form (e.g. what a table holds): it wraps within the form's
    width instead of widening it, and takes the whole value column."""
    widget = Label(name=name, label=label, value=value)
    widget.native.setWordWrap(True)
    widget.native.setMinimumWidth(1)  # a wrapping QLabel asks for a third of its text's width
    widget.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return widget
