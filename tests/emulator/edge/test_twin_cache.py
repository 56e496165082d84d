"""The twin cache's pure parts: twins from a GET answer, and desired differences."""

from __future__ import annotations

from azure_iot_harness.emulator.edge.twin_cache import desired_diff, from_device_view


def test_a_twin_from_what_a_get_answers():
    twin = from_device_view({"desired": {"a": 1, "$version": 7}, "reported": {"b": {"c": 2}, "$version": 3}})
    assert (twin["desired"], twin["desiredVersion"], twin["reported"], twin["reportedVersion"]) == ({"a": 1}, 7, {"b": {"c": 2}}, 3)


def test_desired_diff_is_a_merge_patch():
    old = {"same": 1, "changed": "a", "gone": True, "nested": {"keep": 1, "drop": 2, "edit": [1]}}
    new = {"same": 1, "changed": "b", "added": None, "nested": {"keep": 1, "edit": [2], "new": {"x": 1}}}
    assert desired_diff(old, new) == {
        "changed": "b",
        "added": None,
        "gone": None,
        "nested": {"drop": None, "edit": [2], "new": {"x": 1}},
    }
    assert desired_diff(new, new) == {}
    assert desired_diff({"o": {"x": 1}}, {"o": 5}) == {"o": 5}
