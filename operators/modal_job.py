"""A job-running operator: modal with a timer in the UI (Blender never waits), blocking in scripts."""
from __future__ import annotations

import time

import bpy

from ..trellis_addon import blocking, results
from ..trellis_addon.queue import IMPORTING, flush_records, manager

TIMER_SECONDS = 0.1
REDRAW_SECONDS = 0.25  # the sidebar is redrawn at most 4 times a second, and only when its text changed


def redraw_sidebars(context) -> None:
    """Redraw the 3D Views' sidebars (the UI region), never the viewports themselves."""
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                for region in area.regions:
                    if region.type == "UI":
                        region.tag_redraw()


class ModalJob:
    """Subclasses give _start(context) -> queued Job or None (having reported why), and
    _done(context, job) -> the operator's result once the job is ready to import or finished."""

    def execute(self, context):
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        try:
            with blocking.ctrl_c_interrupts():
                blocking.wait(job)
        except KeyboardInterrupt:
            job.cancel()
        result = self._done(context, job)
        flush_records()  # a script may read job.json as soon as the operator returns
        return result

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        return self._run_modal(context, self._start(context))

    def _run_modal(self, context, job):
        """Follow a started job from a window-manager timer; Esc cancels it."""
        if job is None:
            return {"CANCELLED"}
        self._job, self._shown, self._redrawn = job, None, 0.0
        self._timer = context.window_manager.event_timer_add(TIMER_SECONDS, window=context.window)
        context.window_manager.modal_handler_add(self)
        redraw_sidebars(context)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        job = self._job
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        manager.poll_all()
        if job.state == IMPORTING and results.land_tick(job):  # its objects, images and normals, in ticks ahead
            return {"PASS_THROUGH"}  # of the one that places it
        if job.state == IMPORTING or job.is_finished:
            context.window_manager.event_timer_remove(self._timer)
            context.workspace.status_text_set(None)
            result = self._done(context, job)
            results.drop_landings(job)  # what no placing took (the job failed or was cancelled meanwhile)
            redraw_sidebars(context)
            return result
        shown = (job.text, round(job.fraction, 3), int(job.elapsed))  # the bar's elapsed time ticks each second
        if shown != self._shown and time.monotonic() - self._redrawn >= REDRAW_SECONDS:
            self._shown, self._redrawn = shown, time.monotonic()
            context.workspace.status_text_set(blocking.progress_line(job))  # redraws the status bar
            redraw_sidebars(context)
        return {"PASS_THROUGH"}

    def cancel(self, context):  # Blender ends the operator (quit, window closed, file loaded): not the user's
        self._job.interrupt()  # Cancel, so a submitted paid task is left to be fetched on the next start
        results.drop_landings(self._job)
        context.window_manager.event_timer_remove(self._timer)
