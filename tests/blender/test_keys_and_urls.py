"""Keys and URL overrides are checked before anything is sent: a key with a line break or a space (a
header injection, or both halves landing in files) is refused naming where it came from, never quoting it;
a URL with a user name or password is refused."""
import os

import bpy
import pytest

from conftest import EXAMPLE_IMAGE, PKG
from test_runware_operator import KEY, generate, runware  # noqa: F401 (fixture)


def job_files(root) -> str:
    text = ""
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                text += f.read().decode("utf-8", "replace")
    return text


@pytest.mark.parametrize("bad", [KEY[:10] + "\r\nX-Evil: 1" + KEY[10:], KEY[:10] + " " + KEY[10:],
                                 KEY[:10] + "\t" + KEY[10:]])
def test_a_key_with_control_characters_is_refused_before_any_request(runware, bad):  # noqa: F811
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.runware_api_key = bad
    with pytest.raises(RuntimeError, match="Runware API Key preference contains spaces or control") as info:
        generate()
    assert runware.requests == [], "nothing was sent"
    for half in (KEY[:10], KEY[10:]):
        assert half not in str(info.value)
    assert KEY[10:] not in job_files(prefs.output_dir)


def test_a_key_with_surrounding_whitespace_is_trimmed(runware):  # noqa: F811
    bpy.context.preferences.addons[PKG].preferences.runware_api_key = f"  {KEY}\n"
    assert generate() == {"FINISHED"}


def test_a_url_with_credentials_is_refused(runware, monkeypatch):  # noqa: F811
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.runware_url = runware.url.replace("http://", "http://user:pass@")
    with pytest.raises(RuntimeError, match="Runware URL carries a user name or password"):
        bpy.ops.trellis.generate(image=EXAMPLE_IMAGE, backend="runware", seed=2, force_new=True)
    assert runware.requests == []
    assert "pass@" not in job_files(prefs.output_dir)
