//! What the simulated storage may do: latencies, fault probabilities, and the area where
//! probabilistic faults may land. Every knob defaults to "off" (no latency, no faults), so a test
//! turns on exactly what it exercises.

use crate::layout::Zone;
use crate::prng::Prng;
use std::ops::Range;

/// Everything a [`super::SimulatedStorage`] is configured with, besides its layout and seed.
#[derive(Clone, Debug)]
pub struct Options {
    pub read_latency: Latency,
    pub write_latency: Latency,
    /// Bound on I/Os pending at once (in flight plus writes waiting behind a sector lock), as
    /// the io actor's ring depth bounds a real disk. Usually `Config::io_depth_max()`.
    pub io_depth_max: usize,
    pub faults: FaultOptions,
    /// Whether the trace hash covers the data of every transfer (a checksum per read, write and
    /// direct write) or only its kind, place, time and result. On by default; a harness that
    /// never compares trace hashes (a fuzz target) turns it off to save the checksums.
    pub trace_data: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            read_latency: Latency::ZERO,
            write_latency: Latency::ZERO,
            io_depth_max: 64,
            faults: FaultOptions::default(),
            trace_data: true,
        }
    }
}

/// Probabilistic faults, for the simulator. (Tests target faults explicitly instead, with the
/// storage's `corrupt_sector`, `fail_reads`, `fail_writes` and `misdirect_write` methods.)
///
/// Every fault except a crash tear lands only on sectors inside `area`; by default the area is
/// empty, so no probabilistic fault can happen whatever the probabilities say.
#[derive(Clone, Debug, Default)]
pub struct FaultOptions {
    pub area: FaultArea,
    /// Per completed read: one sector of the read (inside the area) becomes corrupt, persistently,
    /// before the data is served. Models bit rot found by a read.
    pub read_corruption: Probability,
    /// Per completed write: after it lands, one of its sectors (inside the area) becomes corrupt.
    pub write_corruption: Probability,
    /// Per write whose first sector is inside the area: the whole write lands at another offset
    /// of the same zone (inside the area, aligned to the zone's I/O unit); the target keeps its
    /// old content.
    pub misdirected_write: Probability,
    /// Per completed read: one sector of the read (inside the area) becomes unreadable (EIO) until
    /// it is rewritten. The read bisects down to it and zeroes it.
    pub read_error: Probability,
    /// Per write whose first sector is inside the area: the write fails with EIO, which the
    /// write policy makes fatal (`Err(IoFatal)` in the completion). Nothing lands.
    pub write_error: Probability,
    /// Per raw transfer of more than one sector: only a random, nonzero whole number of sectors is
    /// transferred, so the read/write policies' continuation paths run.
    pub partial_transfer: Probability,
    /// Per in-flight write at a crash: the write is torn. Applies in every zone (ignores `area`).
    pub crash_torn_write: Probability,
    /// Per in-flight write at a crash that was not torn: it landed fully (otherwise not at all).
    pub crash_untorn_write_landed: Probability,
}

/// A probability in parts per million, sampled from the storage's PRNG. `NEVER` draws nothing
/// from the PRNG, so turning a fault off does not shift any other random choice of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probability {
    per_million: u32,
}

impl Probability {
    pub const NEVER: Probability = Probability { per_million: 0 };
    pub const ALWAYS: Probability = Probability {
        per_million: 1_000_000,
    };

    pub const fn per_million(per_million: u32) -> Probability {
        assert!(per_million <= 1_000_000);
        Probability { per_million }
    }

    pub const fn percent(percent: u32) -> Probability {
        assert!(percent <= 100);
        Probability::per_million(percent * 10_000)
    }

    pub fn per_million_value(self) -> u32 {
        self.per_million
    }

    pub fn sample(self, prng: &mut Prng) -> bool {
        match self.per_million {
            0 => false,
            1_000_000 => true,
            per_million => prng.chance(per_million as u64, 1_000_000),
        }
    }
}

/// I/O latency: `max(min_ns, exponential(mean_ns))`, drawn per I/O (ref §8.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    pub min_ns: u64,
    pub mean_ns: u64,
}

impl Latency {
    pub const ZERO: Latency = Latency {
        min_ns: 0,
        mean_ns: 0,
    };

    /// A latency draw. A zero mean draws nothing from the PRNG.
    pub fn sample_ns(&self, prng: &mut Prng) -> u64 {
        if self.mean_ns == 0 {
            return self.min_ns;
        }
        let exponential_q32 = exponential_q32(prng) as u128;
        let latency_ns = (self.mean_ns as u128 * exponential_q32) >> 32;
        self.min_ns
            .max(u64::try_from(latency_ns).unwrap_or(u64::MAX))
    }
}

/// ln 2 in Q32 fixed point.
const LN_2_Q32: u128 = 2_977_044_472;

/// A standard exponential variate `−ln(U)`, U uniform in (0, 1), in Q32 fixed point.
fn exponential_q32(prng: &mut Prng) -> u64 {
    // U = x / 2⁶⁴ with x ≥ 1 (forcing the low bit costs nothing measurable).
    negative_ln_q32(prng.next_u64() | 1)
}

/// `−ln(x / 2⁶⁴)` in Q32 fixed point, for x ≥ 1: `(64 − log2 x) · ln 2`. Integer arithmetic only
/// (no `f64::ln`, whose last bit may differ between platforms and libm versions), so a seed
/// draws the same latencies everywhere.
fn negative_ln_q32(x: u64) -> u64 {
    assert!(x > 0);
    let leading_zeros = x.leading_zeros();
    let log2_integer = 63 - leading_zeros as u64;
    // The mantissa x / 2^log2_integer in [1, 2), in Q62 (its top bit is bit 62).
    let mut mantissa_q62 = ((x << leading_zeros) >> 1) as u128;
    let mut log2_fraction_q32 = 0u64;
    // Bit-by-bit logarithm: squaring the mantissa doubles its log; a square ≥ 2 means the next
    // fraction bit is 1.
    for bit in (0..32).rev() {
        mantissa_q62 = (mantissa_q62 * mantissa_q62) >> 62;
        if mantissa_q62 >= 2 << 62 {
            mantissa_q62 >>= 1;
            log2_fraction_q32 |= 1 << bit;
        }
    }
    let log2_q32 = (log2_integer << 32) | log2_fraction_q32;
    let negative_log2_q32 = (64u64 << 32) - log2_q32;
    ((negative_log2_q32 as u128 * LN_2_Q32) >> 32) as u64
}

/// Which sectors probabilistic faults may touch: a union of sector ranges, each inside one zone
/// (sector indices relative to the zone start). TigerBeetle's simulator, for example, never
/// faults the superblock except by crashing; a simulator here builds the same policy from zones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultArea {
    ranges: Vec<AreaRange>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaRange {
    pub zone: Zone,
    /// Sector indices within the zone; the end is clamped to the zone's size.
    pub sectors: Range<u64>,
}

impl FaultArea {
    /// No sector: probabilistic faults are off.
    pub fn nowhere() -> FaultArea {
        FaultArea::default()
    }

    /// Every zone that is ever read or written.
    pub fn everywhere() -> FaultArea {
        Zone::ALL
            .into_iter()
            .filter(|zone| *zone != Zone::GridPadding)
            .fold(FaultArea::nowhere(), FaultArea::with_zone)
    }

    pub fn with_zone(self, zone: Zone) -> FaultArea {
        self.with_sectors(zone, 0..u64::MAX)
    }

    pub fn with_sectors(mut self, zone: Zone, sectors: Range<u64>) -> FaultArea {
        assert!(sectors.start < sectors.end, "empty fault area range");
        assert_ne!(zone, Zone::GridPadding, "the grid padding is never written");
        self.ranges.push(AreaRange { zone, sectors });
        self
    }

    pub fn contains(&self, zone: Zone, sector_in_zone: u64) -> bool {
        self.ranges
            .iter()
            .any(|range| range.zone == zone && range.sectors.contains(&sector_in_zone))
    }

    pub fn ranges(&self) -> &[AreaRange] {
        &self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_latency_has_the_requested_mean_and_floor() {
        let mut prng = Prng::new(3);
        let latency = Latency {
            min_ns: 1_000,
            mean_ns: 1_000_000,
        };
        let samples = 20_000u64;
        let total_ns: u64 = (0..samples).map(|_| latency.sample_ns(&mut prng)).sum();
        let mean_ns = total_ns / samples;
        assert!((960_000..1_040_000).contains(&mean_ns), "mean {mean_ns}");
        let mut prng = Prng::new(4);
        assert!((0..1000).all(|_| latency.sample_ns(&mut prng) >= 1_000));
    }

    #[test]
    fn integer_logarithm_matches_the_natural_logarithm() {
        // Checked against f64 only here; the draw itself never uses floating point.
        for x in [
            1u64,
            2,
            3,
            1 << 20,
            12_345_678_901_234,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let expected = -(x as f64 / 2f64.powi(64)).ln();
            let actual = negative_ln_q32(x) as f64 / 2f64.powi(32);
            assert!(
                (actual - expected).abs() < 1e-6,
                "x={x}: {actual} vs {expected}"
            );
        }
    }

    #[test]
    fn probability_never_draws_nothing_and_always_is_certain() {
        let mut a = Prng::new(9);
        let mut b = Prng::new(9);
        assert!(!Probability::NEVER.sample(&mut a));
        assert!(Probability::ALWAYS.sample(&mut a));
        assert_eq!(a.next_u64(), b.next_u64());
        let mut prng = Prng::new(1);
        let hits = (0..10_000)
            .filter(|_| Probability::percent(10).sample(&mut prng))
            .count();
        assert!((800..1200).contains(&hits), "{hits}");
    }

    #[test]
    fn area_contains_only_its_ranges() {
        let area = FaultArea::nowhere()
            .with_zone(Zone::Grid)
            .with_sectors(Zone::WalHeaders, 2..4);
        assert!(area.contains(Zone::Grid, 1 << 40));
        assert!(area.contains(Zone::WalHeaders, 3));
        assert!(!area.contains(Zone::WalHeaders, 4));
        assert!(!area.contains(Zone::Superblock, 0));
        assert!(!FaultArea::everywhere().contains(Zone::GridPadding, 0));
    }
}
