"""Add-on preferences and the folders jobs write to."""
from __future__ import annotations

import os

import bpy

from .. import __package__ as base_package


class TRELLIS_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = base_package

    output_dir: bpy.props.StringProperty(
        name="Results Folder", subtype="DIR_PATH",
        description="Where each job keeps its input, GLB files and log. Empty: the extension's user folder")

    runware_api_key: bpy.props.StringProperty(
        name="Runware API Key", subtype="PASSWORD",
        description="Key from runware.ai. Stored in your Blender preferences, never in .blend files. "
                    "Empty: the RUNWARE_API_KEY environment variable")
    runware_url: bpy.props.StringProperty(
        name="Runware URL", description="API endpoint (proxies, testing). Empty: TRELLIS_RUNWARE_URL or "
                                        "https://api.runware.ai/v1")
    poll_timeout_minutes: bpy.props.FloatProperty(
        name="Remote Timeout", default=20.0, min=1.0, max=240.0, subtype="TIME_ABSOLUTE",
        description="Give up waiting for a hosted result after this many minutes")
    confirm_above: bpy.props.FloatProperty(
        name="Confirm Above", default=0.25, min=0.0, precision=2,
        description="Ask before a hosted job whose estimated cost (USD) is above this. 0: always ask")
    session_cap: bpy.props.FloatProperty(
        name="Session Cap", default=5.0, min=0.0, precision=2,
        description="Refuse hosted jobs once this session's spending (USD) would pass this. 0: no cap")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "output_dir")
        layout.label(text=f"In use: {jobs_root(create=False)}", icon="FILE_FOLDER")
        box = layout.box()
        box.label(text="Runware (hosted TRELLIS.2)", icon="WORLD")
        box.prop(self, "runware_api_key")
        if not self.runware_api_key:
            found = "found" if os.environ.get("RUNWARE_API_KEY") else "not set"
            box.label(text=f"RUNWARE_API_KEY environment variable: {found}", icon="INFO")
        box.prop(self, "runware_url")
        box.prop(self, "poll_timeout_minutes")
        row = box.row()
        row.prop(self, "confirm_above")
        row.prop(self, "session_cap")
        if not bpy.app.online_access:
            box.label(text="Online access is off: Preferences ▸ System ▸ Network ▸ Allow Online Access",
                      icon="ERROR")


def get() -> TRELLIS_AP_preferences | None:
    addon = bpy.context.preferences.addons.get(base_package)
    return addon.preferences if addon else None


def jobs_root(create: bool = True) -> str:
    prefs = get()
    custom = bpy.path.abspath(prefs.output_dir) if prefs and prefs.output_dir else ""
    if custom:
        if create:
            os.makedirs(custom, exist_ok=True)
        return custom
    return bpy.utils.extension_path_user(base_package, path="jobs", create=create)


classes = (TRELLIS_AP_preferences,)


class AccessError(ValueError):
    pass


REMOTE = {  # backend id -> (key preference, key variable, URL preference, URL variable)
    "runware": ("runware_api_key", "RUNWARE_API_KEY", "runware_url", "TRELLIS_RUNWARE_URL"),
}


def remote_access(backend_id: str) -> tuple[dict, dict]:
    """(options, secrets) for a hosted backend: preferences win over the environment. AccessError when
    online access is off or no key is set; nothing is sent then."""
    key_pref, key_env, url_pref, url_env = REMOTE[backend_id]
    if not bpy.app.online_access:
        raise AccessError("Online access is off: turn on Edit ▸ Preferences ▸ System ▸ Network ▸ "
                          "Allow Online Access (headless: blender --online-mode)")
    prefs = get()
    key = (getattr(prefs, key_pref, "") if prefs else "") or os.environ.get(key_env, "")
    if not key:
        raise AccessError(f"No API key: set it in the TRELLIS add-on preferences or the {key_env} variable")
    url = (getattr(prefs, url_pref, "") if prefs else "") or os.environ.get(url_env, "")
    minutes = prefs.poll_timeout_minutes if prefs else 20.0
    return {"base_url": url, "poll_timeout": minutes * 60}, {"api_key": key}
