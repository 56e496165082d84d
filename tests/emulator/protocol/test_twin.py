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
