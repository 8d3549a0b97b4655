//! Intel AMX tiles for many activation rows at once (prefill, the layer sweep's branches): per
//! weight group (16 rows) and block of 32 values, one tile product adds the integer sums of 16
//! activation rows against the group's 16 rows (`tdpb*d`: 16 × 16 × 32 multiply-adds), and the
//! same f32 scaling as the VNNI kernel turns them into the outputs, block by block, in the same
//! order: the results are bit for bit those of [`super::group_zmm`].
//!
//! 12-bit activation levels go in split, `q = 16·hi + lo` (`hi` a signed byte, `lo` 0..15), 64
//! bytes per block: against Q4 blocks one tile product of K = 64 meets the high parts with
//! `16·u` and the low parts with `u` (both unsigned bytes), `Σ(16·hi + lo)·u` exactly; against
//! Q8_0 blocks two products (`Σhi·w`, `Σlo·w`) are combined as `16·H + L`. 8-bit levels are one
//! plane. Q4 levels are unpacked once per group into B tiles (unsigned bytes); Q8_0's stored
//! bytes already are one (signed). Even and odd blocks use their own sum and B tiles, so one
//! block's tile products run while the previous block is scaled. Stable Rust has no AMX
//! intrinsics: the tile instructions are inline assembly. Linux hands out the tile state only
//! on request (`arch_prctl`), asked once.

use core::arch::asm;
use core::arch::x86_64::*;
use std::cell::Cell;
use std::sync::OnceLock;

use super::isa::{Isa, Zmm};
use super::{BlockDot, Interleaved, QRows};
use crate::weights::blocks::BLOCK;

/// Whether this CPU and OS run AMX-INT8 tiles (`TASKVEC_AMX=0` turns them off).
pub(crate) fn ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        if std::env::var("TASKVEC_AMX").is_ok_and(|v| v == "0") {
            return false;
        }
        let edx = __cpuid_count(7, 0).edx;
        let (tile, int8) = (edx & (1 << 24) != 0, edx & (1 << 25) != 0);
        tile && int8 && os_grants_tiles()
    })
}

/// Linux: ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, the kernel enabling the tile data state
/// for this process (or saying no where it cannot).
#[cfg(target_os = "linux")]
fn os_grants_tiles() -> bool {
    // SAFETY: a plain system call with integer arguments.
    unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1023, 18) == 0 }
}

/// Elsewhere the tiles are not used.
#[cfg(not(target_os = "linux"))]
fn os_grants_tiles() -> bool {
    false
}

/// The tile palette: tmm0/tmm1 and tmm5/tmm6 the 16 × 16 i32 sums (two sets, for even and odd
/// blocks), tmm2/tmm3 16 activation rows × 32 bytes, tmm4/tmm7 a block of the group as 8 rows of
/// 16 × 4 bytes (even, odd).
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette 1
        // colsb (bytes per row, u16 at 16 + 2·t), rows (u8 at 48 + t)
        let tiles: [(u16, u8); 8] = [
            (64, 16),
            (64, 16),
            (32, 16),
            (32, 16),
            (64, 8),
            (64, 16),
            (64, 16),
            (64, 8),
        ];
        for (t, (colsb, rows)) in tiles.into_iter().enumerate() {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
            c[48 + t] = rows;
        }
        Config(c)
    }
}

/// Loads the tile configuration on this thread, once (it is per thread, kept across context
/// switches by the kernel).
fn configure() {
    thread_local!(static DONE: Cell<bool> = const { Cell::new(false) });
    DONE.with(|d| {
        if !d.get() {
            let cfg = Config::new();
            // SAFETY: `ready()` was true (the caller checks), the config is a valid palette 1.
            unsafe { asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack)) };
            d.set(true);
        }
    });
}

/// A 64-byte-aligned sum tile (16 × 16 i32).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Sums([i32; 256]);

/// A 64-byte-aligned B tile (8 rows × 64 bytes).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Tile([u8; 512]);

/// One block's tile products into one set of sum tiles (`$hi`, `$lo`, with B tile `$b`):
/// loads, zeroes, multiplies (`$op_hi`/`$op_lo`: the signedness pairs) and stores the sums.
macro_rules! block_ops {
    ($hi:literal, $lo:literal, $b:literal, $op_hi:literal, $op_lo:literal, $wide:expr,
     $bt:expr, $ahi:expr, $alo:expr, $k:expr, $shi:expr, $slo:expr) => {{
        asm!(
            concat!("tileloadd ", $b, ", [{b} + {s64}]"),
            "tileloadd tmm2, [{a} + {k}]",
            concat!("tilezero ", $hi),
            concat!($op_hi, " ", $hi, ", tmm2, ", $b),
            concat!("tilestored [{p} + {s64}], ", $hi),
            b = in(reg) $bt, s64 = in(reg) 64usize, a = in(reg) $ahi, k = in(reg) $k,
            p = in(reg) $shi, options(nostack)
        );
        if $wide {
            asm!(
                "tileloadd tmm3, [{a} + {k}]",
                concat!("tilezero ", $lo),
                concat!($op_lo, " ", $lo, ", tmm3, ", $b),
                concat!("tilestored [{p} + {s64}], ", $lo),
                s64 = in(reg) 64usize, a = in(reg) $alo, k = in(reg) $k,
                p = in(reg) $slo, options(nostack)
            );
        }
    }};
}

/// One block of split 12-bit levels against a Q4 block's B tiles (`$bt`: 16 rows, `16·u`
/// then `u`): one `tdpbsud` of 16 activation rows × 64 bytes (`16·hi` meets the high parts,
/// `u` the low parts) into sum tile `$c`, stored at `$s`. tmm1 and tmm6 (16 × 64 bytes, the
/// other paths' sum tiles) hold the activations and the weights.
macro_rules! split_block {
    ($c:literal, $bt:expr, $a:expr, $ld:expr, $s:expr) => {{
        asm!(
            "tileloadd tmm6, [{b} + {s64}]",
            "tileloadd tmm1, [{a} + {ld}]",
            concat!("tilezero ", $c),
            concat!("tdpbsud ", $c, ", tmm1, tmm6"),
            concat!("tilestored [{p} + {s64}], ", $c),
            b = in(reg) $bt, s64 = in(reg) 64usize, a = in(reg) $a, ld = in(reg) $ld,
            p = in(reg) $s, options(nostack)
        );
    }};
}

/// Whole 16-row tiles of `x` against group `g` (outputs as [`super::group_zmm`]); returns the
/// rows done (a multiple of 16; the caller does the rest).
///
/// # Safety
/// [`ready()`] was true and the CPU has AVX-512F/BW/VL, F16C and FMA; `w` is interleaved for
/// 16 lanes; `planes` is `x`'s split levels when `T` is `i16`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn rows<T: BlockDot>(
    w: &Interleaved,
    g: usize,
    x: &QRows<T>,
    planes: &[u8],
    out: &mut [f32],
    stride: usize,
) -> usize {
    let wide = size_of::<T>() == 2;
    let full = x.rows / 16 * 16;
    let l = &w.layout;
    let (k, nb, bb) = (w.cols, w.cols / BLOCK, 16 * l.bytes);
    let blocks = w.group_blocks(g);
    assert!(w.kernel.lanes() == 16 && blocks.len() >= nb * bb);
    assert!(!wide || planes.len() == 2 * x.rows * k);
    assert!(full == 0 || out.len() >= (full - 1) * stride + 16);
    if full == 0 {
        return 0;
    }
    configure();
    // Split 12-bit levels against Q4 blocks: one tile product per block ([`split_block`]).
    let split = wide && l.bits == 4;
    // Activation rows: the split levels (64 bytes per block, 32 of high parts then 32 of low
    // parts) or the 8-bit levels (32 bytes per block).
    let (a, ld) = if wide {
        (planes.as_ptr(), 2 * k)
    } else {
        (x.q.as_ptr() as *const u8, k)
    };
    // Q4 levels unpacked once per group into B tiles (unsigned bytes), for every row tile:
    // per block 8 rows of 16 × 4 levels `u`, or for split levels 8 rows of `16·u` then 8 of `u`.
    thread_local!(static SCRATCH: std::cell::RefCell<(Vec<Tile>, Vec<Sums>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    });
    SCRATCH.with_borrow_mut(|(tiles, sums)| {
        let per_block = if split { 2 } else { 1 };
        if l.bits == 4 {
            // Every tile is written whole below: no need to clear the previous group's.
            tiles.resize(per_block * nb, Tile([0; 512]));
            for (b, t) in tiles.chunks_exact_mut(per_block).enumerate() {
                // SAFETY: block b's 4 × 64 level bytes are inside `blocks` (asserted).
                unsafe {
                    let lv = blocks.as_ptr().add(b * bb + 16 * l.levels_at);
                    for c in 0..4 {
                        let (lo, hi) = Zmm::nibbles(Zmm::load(lv.add(64 * c)));
                        let u = t.last_mut().expect("a tile").0.as_mut_ptr();
                        _mm512_store_si512(u.add(64 * c) as *mut __m512i, lo);
                        _mm512_store_si512(u.add(256 + 64 * c) as *mut __m512i, hi);
                        if split {
                            // 16·u: each byte's nibble moved up (no carry between bytes).
                            let u16 = t[0].0.as_mut_ptr();
                            let (lo, hi) = (_mm512_slli_epi16(lo, 4), _mm512_slli_epi16(hi, 4));
                            _mm512_store_si512(u16.add(64 * c) as *mut __m512i, lo);
                            _mm512_store_si512(u16.add(256 + 64 * c) as *mut __m512i, hi);
                        }
                    }
                }
            }
        }
        // Two sets of sum tiles: block b's tile products run while the vector unit scales
        // block b − 1's sums (a tile store is read back only one block later).
        sums.resize(4, Sums([0; 256]));
        let set = |b: usize| (2 * (b % 2), 2 * (b % 2) + 1);
        // Planes of 12-bit levels against Q8_0: `16·Σhi·w + Σlo·w`.
        let two = wide && !split;
        // SAFETY: tile loads read 16 rows of 32 (64 for split levels) bytes of activations at
        // row stride ld inside the levels / planes (rows m0..m0 + 16 ≤ x.rows), 8 (16) × 64
        // bytes of a block's levels or of its unpacked tiles; tile stores write the four sum
        // tiles; vector loads stay in the blocks and sums, stores in `out` (asserted).
        unsafe {
            for m0 in (0..full).step_by(16) {
                let mut acc = [Zmm::zero_f(); 16];
                for b in 0..=nb {
                    if b < nb {
                        let (h, o) = set(b);
                        let bt = match l.bits {
                            4 => tiles[per_block * b].0.as_ptr(),
                            _ => blocks.as_ptr().add(b * bb + 16 * l.levels_at),
                        };
                        let at = a.add(m0 * ld + b * (ld / nb));
                        let (shi, slo) = (sums[h].0.as_mut_ptr(), sums[o].0.as_mut_ptr());
                        // One set of sum, B tiles and signedness per block parity and type.
                        macro_rules! go {
                            ($hi:literal, $lo:literal, $b:literal, $oh:literal, $ol:literal) => {
                                block_ops!(
                                    $hi,
                                    $lo,
                                    $b,
                                    $oh,
                                    $ol,
                                    two,
                                    bt,
                                    at,
                                    at.wrapping_add(BLOCK),
                                    ld,
                                    shi,
                                    slo
                                )
                            };
                        }
                        match (split, l.bits == 4, b % 2 == 0) {
                            (true, _, true) => split_block!("tmm0", bt, at, ld, shi),
                            (true, _, false) => split_block!("tmm5", bt, at, ld, shi),
                            (false, true, true) => {
                                go!("tmm0", "tmm1", "tmm4", "tdpbsud", "tdpbuud")
                            }
                            (false, true, false) => {
                                go!("tmm5", "tmm6", "tmm7", "tdpbsud", "tdpbuud")
                            }
                            (false, false, true) => {
                                go!("tmm0", "tmm1", "tmm4", "tdpbssd", "tdpbusd")
                            }
                            (false, false, false) => {
                                go!("tmm5", "tmm6", "tmm7", "tdpbssd", "tdpbusd")
                            }
                        }
                    }
                    let Some(p) = b.checked_sub(1) else {
                        continue;
                    };
                    let (h, o) = set(p);
                    let (hi_sums, lo_sums) = (sums[h].0.as_ptr(), sums[o].0.as_ptr());
                    let (dw, offset) = super::block_scales::<Zmm>(l, blocks.as_ptr().add(p * bb));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let mut dot = _mm512_load_si512(hi_sums.add(16 * r) as *const __m512i);
                        if two {
                            let lo = _mm512_load_si512(lo_sums.add(16 * r) as *const __m512i);
                            dot = _mm512_add_epi32(_mm512_slli_epi32(dot, 4), lo);
                        }
                        let kb = (m0 + r) * nb + p;
                        *a = Zmm::scaled(*a, dot, dw, *x.d.get_unchecked(kb));
                        if let Some(o) = offset {
                            *a = Zmm::fmadd(*a, o, *x.s.get_unchecked(kb));
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    Zmm::store(out.as_mut_ptr().add((m0 + r) * stride), *a);
                }
            }
        }
    });
    full
}
