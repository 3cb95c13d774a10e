"""The one text-view renderer: lines laid out once per width, each painted line cached (line, width,
horizontal scroll), the cache emptied when the text or the width changes; and the one live-screen
base every data screen uses."""

from __future__ import annotations

from textual.app import App, ComposeResult

from oncall.tui.textview import OutputView, RichLinesView, TextView


class One(App):
    def compose(self) -> ComposeResult:
        yield OutputView(id="out")


async def test_painted_lines_are_cached_and_forgotten_on_new_text() -> None:
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(OutputView)
        view.load_text("\n".join(f"line {i} " + "word " * 30 for i in range(2000)))
        await pilot.pause()
        painted: list[int] = []
        real = view._paint

        def counting(index: int, width: int, x: int):  # noqa: ANN202
            painted.append(index)
            return real(index, width, x)

        view._paint = counting  # type: ignore[method-assign]
        first = [view.render_line(y) for y in range(10)]
        again = [view.render_line(y) for y in range(10)]
        assert first == again and painted == []  # the screen painted them once already: both passes hit the cache
        view.scroll_to(y=500, animate=False)
        await pilot.pause()  # the screen paints the new rows once
        view.render_line(0)
        view.render_line(0)
        assert painted.count(500) == 1 and view.cached_strips() >= 20
        view.load_text("short")
        await pilot.pause()
        assert view.cached_strips() <= 20 and view.render_line(0).text.startswith("short")


async def test_a_resize_lays_out_again() -> None:
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(OutputView)
        view.load_text("x " * 200)
        await pilot.pause()
        narrow = view.virtual_size.height
        await pilot.resize_terminal(120, 20)
        await pilot.pause()
        assert view.virtual_size.height < narrow


def test_every_text_view_is_the_one_renderer() -> None:
    from oncall.tui.screens.postmortem import DraftView

    for cls in (OutputView, RichLinesView, DraftView):
        assert issubclass(cls, TextView) and "render_line" not in cls.__dict__, cls


def test_every_data_screen_is_live() -> None:
    from oncall.tui.live import LiveScreen
    from oncall.tui.screens.actions import ActionDetailScreen, ActionsScreen
    from oncall.tui.screens.explorer import ExplorerScreen
    from oncall.tui.screens.overview import OverviewScreen
    from oncall.tui.screens.postmortem import PostmortemScreen
    from oncall.tui.screens.reader import ReaderScreen
    from oncall.tui.screens.timeline import TimelineScreen

    for cls in (OverviewScreen, ExplorerScreen, ReaderScreen, TimelineScreen, PostmortemScreen, ActionsScreen,
                ActionDetailScreen):
        assert issubclass(cls, LiveScreen) and "data_changed" in cls.__dict__, cls
