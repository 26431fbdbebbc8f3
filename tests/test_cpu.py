"""What the CPU offers int8 inference, read from /proc/cpuinfo's flags: the machines these bundles meet."""

from r1omni_edge.cpu import Int8Support, int8_support, int8_support_from, saturating_parts

ZEN3 = "processor\t: 0\nflags\t\t: fpu sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni vaes\n"
ZEN1 = "flags\t\t: fpu sse4_1 avx avx2 fma\n"
SKYLAKE_X = "flags\t\t: sse4_1 avx2 avx512f avx512bw avx512vl\n"
CASCADE_LAKE = "flags\t\t: sse4_1 avx2 avx512f avx512bw avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512bw avx512_vnni avx_vnni amx_bf16 amx_tile amx_int8\n"
ALDER_LAKE = "flags\t\t: avx2 avx_vnni\n"
ORIN = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp\n"


def test_the_int8_instructions_of_each_cpu_kind():
    cases = {ZEN3: ("AVX2 without VNNI", True), ZEN1: ("AVX2 without VNNI", True),
             SKYLAKE_X: ("AVX-512 without VNNI", True), CASCADE_LAKE: ("AVX512-VNNI", False),
             SAPPHIRE_RAPIDS: ("AMX", False), ALDER_LAKE: ("AVX-VNNI", False)}
    for cpuinfo, expected in cases.items():
        support = int8_support_from(cpuinfo, "x86_64")
        assert (support.instructions, support.saturates_full_range) == expected, cpuinfo
    assert int8_support_from(ORIN, "aarch64") == Int8Support("ARM NEON with dot product", False)
    assert int8_support_from("", "riscv64").saturates_full_range is False
    assert "saturate" in int8_support_from(ZEN3, "x86_64").describe()
    assert "saturate" not in int8_support_from(SAPPHIRE_RAPIDS, "x86_64").describe()
    assert int8_support().instructions  # this machine: whatever it is, it is named


def test_only_full_range_parts_saturate_and_only_where_the_cpu_saturates():
    weights = {"vision": "s8", "audio": "s7", "decoder": "u8", "prefill": "s8"}
    assert saturating_parts(weights, Int8Support("AVX2 without VNNI", True)) == ["prefill", "vision"]
    assert saturating_parts(weights, Int8Support("AMX", False)) == []
