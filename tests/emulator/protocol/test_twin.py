import pytest

from azure_iot_harness.emulator.protocol import twin as tw

NOW = "2026-01-01T00:00:00.000Z"
LATER = "2026-01-01T00:00:01.000Z"


def test_reported_patch_merges_deletes_and_bumps_versions():
    t = tw.apply_patch(tw.new_twin(), "reported", {"a": 1, "b": {"c": "x", "d": True}}, NOW)
    t = tw.apply_patch(t, "reported", {"a": None, "b": {"c": "y"}, "$version": 99}, LATER)
    assert t["reported"] == {"b": {"c": "y", "d": True}}
    assert t["reportedVersion"] == 3 and t["desiredVersion"] == 1 and t["version"] == 3
    meta = t["reportedMeta"]
    assert meta["$lastUpdated"] == LATER and meta["b"]["c"]["$lastUpdated"] == LATER
    assert meta["b"]["d"]["$lastUpdated"] == NOW and "a" not in meta


def test_desired_metadata_carries_the_version():
    t = tw.apply_patch(tw.new_twin(), "desired", {"fan": {"speed": 3}}, NOW)
    assert t["desiredMeta"]["fan"]["speed"] == {"$lastUpdated": NOW, "$lastUpdatedVersion": 2}
    assert tw.device_view(t) == {"desired": {"fan": {"speed": 3}, "$version": 2}, "reported": {"$version": 1}}
    props = tw.properties_view(t)
    assert props["desired"]["$metadata"]["$lastUpdatedVersion"] == 2


def test_etag_is_base64_of_the_64_bit_version():
    assert tw.etag(tw.new_twin()) == "AAAAAAAAAAE="


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"a.b": 1}, "may not contain"),
        ({"$x": 1}, "may not contain"),
        ({"a b": 1}, "may not contain"),
        ({"a\x01": 1}, "may not contain"),
        ({"": 1}, "empty property name"),
        ({"k" * 1025: 1}, "longer than 1024"),
        ({"s": "x" * 4097}, "string longer"),
        ({"i": 2**53}, "outside"),
        ({"l": [1, None]}, "may not hold null"),
        ({"n": float("nan")}, "not finite"),
    ],
)
def test_invalid_patches(patch, message):
    with pytest.raises(tw.TwinError, match=message):
        tw.apply_patch(tw.new_twin(), "reported", patch, NOW)


def test_depth_limit():
    ok: dict = {"v": 1}
    for _ in range(9):
        ok = {"n": ok}
    tw.apply_patch(tw.new_twin(), "reported", ok, NOW)  # 10 levels
    with pytest.raises(tw.TwinError, match="deeper than 10"):
        tw.apply_patch(tw.new_twin(), "reported", {"n": ok}, NOW)


def test_section_size_limits_apply_after_the_merge():
    t = tw.apply_patch(tw.new_twin(), "reported", {f"k{i}": "x" * 4000 for i in range(8)}, NOW)
    with pytest.raises(tw.TwinError, match="32768-byte limit"):
        tw.apply_patch(t, "reported", {"more": "x" * 4000}, NOW)
    with pytest.raises(tw.TwinError, match="8192-byte limit"):
        tw.apply_patch(tw.new_twin(), "tags", {"a": "x" * 4096, "b": "y" * 4096}, NOW)


def test_size_counts_numbers_and_booleans():
    assert tw.size({"ab": 1, "c": True, "d": "xyz", "e": {"f": 1.5}}) == (2 + 8) + (1 + 4) + (1 + 3) + (1 + 1 + 8)


def test_replace_section_drops_what_is_missing():
    t = tw.apply_patch(tw.new_twin(), "desired", {"a": 1, "b": 2}, NOW)
    t = tw.replace_section(t, "desired", {"b": 3, "$metadata": {}, "$version": 5}, LATER)
    assert t["desired"] == {"b": 3} and t["desiredVersion"] == 3
    with pytest.raises(tw.TwinError, match="null is not allowed"):
        tw.replace_section(t, "tags", {"a": None}, NOW)


def test_parse_patch():
    assert tw.parse_patch(b'{"a": 1}') == {"a": 1}
    for bad in (b"{", b"[1]", b"\xff"):
        with pytest.raises(tw.TwinError):
            tw.parse_patch(bad)


def _desired(a: dict) -> dict:
    return tw.apply_patch(tw.new_twin(), "desired", a, NOW)


def test_null_desired_in_a_patch_removes_every_desired_property():
    t = tw.apply_patch(_desired({"a": 1, "b": {"c": 2}}), "tags", {"site": "x"}, NOW)
    new, notice = tw.service_update(t, {"properties": {"desired": None}}, LATER, replace=False)
    assert new["desired"] == {} and new["desiredVersion"] == t["desiredVersion"] + 1
    assert notice == {"a": None, "b": None} and new["tags"] == {"site": "x"}
    assert new["desiredMeta"]["$lastUpdated"] == LATER and "a" not in new["desiredMeta"]


def test_null_desired_on_an_empty_section_changes_nothing():
    t = tw.new_twin()
    assert tw.service_update(t, {"properties": {"desired": None}}, NOW, replace=False) == (t, None)


def test_null_tags_in_a_patch_removes_every_tag_and_notifies_nobody():
    t = tw.apply_patch(tw.new_twin(), "tags", {"a": 1, "b": {"c": 2}}, NOW)
    new, notice = tw.service_update(t, {"tags": None}, LATER, replace=False)
    assert new["tags"] == {} and notice is None and new["version"] == t["version"] + 1


def test_null_members_at_any_depth_are_removed_and_passed_on():
    t = _desired({"a": {"b": {"c": 1, "d": 2}}, "e": 3})
    body = {"tags": {"x": {"y": None}}, "properties": {"desired": {"a": {"b": {"c": None}}, "e": None}}}
    new, notice = tw.service_update(t, body, LATER, replace=False)
    assert new["desired"] == {"a": {"b": {"d": 2}}} and new["tags"] == {"x": {}}
    assert notice == {"a": {"b": {"c": None}}, "e": None}


def test_put_tells_the_device_what_disappeared():
    t = _desired({"a": 1, "b": 2, "n": {"p": 1, "q": 2}})
    new, notice = tw.service_update(t, {"properties": {"desired": {"a": 1, "c": 100, "n": {"p": 1}}}}, LATER, replace=True)
    assert new["desired"] == {"a": 1, "c": 100, "n": {"p": 1}}
    assert notice == {"a": 1, "b": None, "c": 100, "n": {"p": 1, "q": None}}


def test_put_with_null_desired_replaces_it_with_nothing_and_keeps_it_when_absent():
    t = _desired({"a": 1})
    new, notice = tw.service_update(t, {"properties": {"desired": None}}, LATER, replace=True)
    assert new["desired"] == {} and notice == {"a": None}
    new, notice = tw.service_update(t, {"tags": {"k": 1}}, LATER, replace=True)
    assert new["desired"] == {"a": 1} and new["tags"] == {"k": 1} and notice is None


@pytest.mark.parametrize(
    "body",
    [{"properties": {"reported": {"a": 1}}}, {"tags": []}, {"properties": {"desired": 5}}, {"properties": []}],
)
def test_service_updates_refused(body):
    with pytest.raises(tw.TwinError):
        tw.service_update(tw.new_twin(), body, NOW, replace=False)


def test_put_refuses_null_members():
    with pytest.raises(tw.TwinError, match="null is not allowed"):
        tw.service_update(tw.new_twin(), {"properties": {"desired": {"a": {"b": None}}}}, NOW, replace=True)


def test_reported_patch_may_end_in_nul_padding_but_not_in_other_garbage():
    assert tw.parse_reported_patch(b'{"a": 1}\n\0\0\0') == {"a": 1}
    for body in (b'{"a": 1}\0x', b'{"a": 1}x\0', b"\0"):
        with pytest.raises(tw.TwinError):
            tw.parse_reported_patch(body)
