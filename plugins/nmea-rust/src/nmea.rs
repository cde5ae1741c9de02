//! NMEA-0183 sentences: framing, checksum, and the two that carry a
//! position fix, GGA (fix data) and RMC (recommended minimum).
//!
//! Any two-letter talker is accepted (`GP` GPS, `GN` multi-constellation,
//! `GL` GLONASS, `GA` Galileo, `GB`/`BD` BeiDou), so `$GNGGA` and `$GPGGA`
//! parse alike. A checksum is required and verified: a GPS on a noisy
//! serial line must not turn a flipped bit into a wrong position.

use std::fmt;

/// Why a line is not a usable sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NmeaError {
    /// The line does not start with `$`.
    NotASentence,
    /// No `*hh` checksum.
    NoChecksum,
    /// The checksum does not match; `want` is what the line says.
    BadChecksum { want: u8, got: u8 },
    /// A field does not parse.
    BadField(&'static str),
}

impl fmt::Display for NmeaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NmeaError::NotASentence => f.write_str("not an NMEA sentence (no leading '$')"),
            NmeaError::NoChecksum => f.write_str("NMEA sentence has no *hh checksum"),
            NmeaError::BadChecksum { want, got } => {
                write!(f, "NMEA checksum mismatch: sentence says {:02X}, data gives {:02X}", want, got)
            }
            NmeaError::BadField(what) => write!(f, "NMEA field {} does not parse", what),
        }
    }
}

/// GGA: global positioning system fix data.
#[derive(Clone, Debug, PartialEq)]
pub struct Gga {
    /// Latitude in degrees, north positive; `None` when empty.
    pub latitude: Option<f64>,
    /// Longitude in degrees, east positive; `None` when empty.
    pub longitude: Option<f64>,
    /// Fix quality: 0 invalid, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6
    /// dead reckoning, ...
    pub quality: u8,
    /// Satellites in use.
    pub satellites: u32,
    /// Horizontal dilution of precision.
    pub hdop: Option<f64>,
    /// Altitude above mean sea level, metres.
    pub altitude: Option<f64>,
}

/// RMC: recommended minimum specific GNSS data.
#[derive(Clone, Debug, PartialEq)]
pub struct Rmc {
    /// Status `A` (valid); `V` is a warning (no fix).
    pub valid: bool,
    /// Latitude in degrees, north positive.
    pub latitude: Option<f64>,
    /// Longitude in degrees, east positive.
    pub longitude: Option<f64>,
    /// Speed over ground, knots.
    pub speed_knots: Option<f64>,
    /// Course over ground, degrees true.
    pub course: Option<f64>,
}

/// A parsed sentence.
#[derive(Clone, Debug, PartialEq)]
pub enum Sentence {
    /// GGA from any talker.
    Gga(Gga),
    /// RMC from any talker.
    Rmc(Rmc),
    /// A valid sentence of another type, e.g. `GPGSV`.
    Other(String),
}

/// The XOR of all bytes, as NMEA checksums are computed (over the bytes
/// between `$` and `*`).
pub fn checksum(data: &[u8]) -> u8 {
    data.iter().fold(0, |a, b| a ^ b)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks framing and checksum and returns the data between `$` and `*`.
pub fn verify(line: &str) -> Result<&str, NmeaError> {
    let line = line.trim_end_matches(|c| c == '\r' || c == '\n' || c == ' ');
    let body = line.strip_prefix('$').ok_or(NmeaError::NotASentence)?;
    let star = body.rfind('*').ok_or(NmeaError::NoChecksum)?;
    let (data, ck) = (&body[..star], &body.as_bytes()[star + 1..]);
    if ck.len() != 2 {
        return Err(NmeaError::NoChecksum);
    }
    let want = match (hex(ck[0]), hex(ck[1])) {
        (Some(h), Some(l)) => h << 4 | l,
        _ => return Err(NmeaError::NoChecksum),
    };
    let got = checksum(data.as_bytes());
    if want != got {
        return Err(NmeaError::BadChecksum { want, got });
    }
    Ok(data)
}

/// `ddmm.mmmm` (or `dddmm.mmmm`) plus hemisphere to signed degrees.
fn coord(v: &str, hemi: &str, deg_digits: usize, neg: &str, pos: &str, what: &'static str) -> Result<Option<f64>, NmeaError> {
    if v.is_empty() {
        return Ok(None);
    }
    let dot = v.find('.').unwrap_or(v.len());
    if dot < deg_digits + 2 || !v.is_char_boundary(dot - 2) {
        return Err(NmeaError::BadField(what));
    }
    let deg: f64 = v[..dot - 2].parse().map_err(|_| NmeaError::BadField(what))?;
    let min: f64 = v[dot - 2..].parse().map_err(|_| NmeaError::BadField(what))?;
    if !(0.0..60.0).contains(&min) {
        return Err(NmeaError::BadField(what));
    }
    let d = deg + min / 60.0;
    if hemi == neg {
        Ok(Some(-d))
    } else if hemi == pos {
        Ok(Some(d))
    } else {
        Err(NmeaError::BadField(what))
    }
}

fn num(v: &str, what: &'static str) -> Result<Option<f64>, NmeaError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| NmeaError::BadField(what))
}

/// Parses one line: framing, checksum, then GGA or RMC fields.
pub fn parse(line: &str) -> Result<Sentence, NmeaError> {
    let data = verify(line)?;
    let f: Vec<&str> = data.split(',').collect();
    let kind = f[0];
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    // The address is a talker (2 letters) and a type; proprietary
    // sentences ($PUBX...) start with P and are "other".
    let ty = if kind.len() == 5 && !kind.starts_with('P') { &kind[2..] } else { "" };
    match ty {
        "GGA" => Ok(Sentence::Gga(Gga {
            latitude: coord(field(2), field(3), 2, "S", "N", "latitude")?,
            longitude: coord(field(4), field(5), 3, "W", "E", "longitude")?,
            quality: if field(6).is_empty() {
                0
            } else {
                field(6).parse().map_err(|_| NmeaError::BadField("fix quality"))?
            },
            satellites: if field(7).is_empty() {
                0
            } else {
                field(7).parse().map_err(|_| NmeaError::BadField("satellites"))?
            },
            hdop: num(field(8), "hdop")?,
            altitude: num(field(9), "altitude")?,
        })),
        "RMC" => Ok(Sentence::Rmc(Rmc {
            valid: field(2) == "A",
            latitude: coord(field(3), field(4), 2, "S", "N", "latitude")?,
            longitude: coord(field(5), field(6), 3, "W", "E", "longitude")?,
            speed_knots: num(field(7), "speed")?,
            course: num(field(8), "course")?,
        })),
        _ => Ok(Sentence::Other(kind.to_string())),
    }
}

/// Metres per second in one knot (1852 m per hour).
pub const KNOT_MPS: f64 = 1852.0 / 3600.0;

/// What the receiver said last, merged from GGA and RMC.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fix {
    /// Degrees, north positive.
    pub latitude: Option<f64>,
    /// Degrees, east positive.
    pub longitude: Option<f64>,
    /// Metres above mean sea level (GGA).
    pub altitude: Option<f64>,
    /// GGA fix quality; 0 when there is no fix.
    pub quality: u8,
    /// Satellites in use (GGA).
    pub satellites: u32,
    /// Speed over ground in m/s (RMC).
    pub speed_mps: Option<f64>,
    /// Whether the last position-bearing sentence had a fix.
    pub has_fix: bool,
    /// Sentences accepted, and lines refused (bad checksum or fields).
    pub accepted: u64,
    /// Lines that looked like sentences but failed verification.
    pub refused: u64,
}

/// What [`Fix::apply_line`] made of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Not a sentence at all (gpsd's JSON replies, blank lines).
    Ignored,
    /// A GGA or RMC sentence, now merged into the fix.
    Position,
    /// Another valid sentence (GSV, GSA, VTG, ...).
    Other,
    /// A corrupt sentence, counted in `refused`.
    Refused(NmeaError),
}

impl Fix {
    /// Applies one line.
    pub fn apply_line(&mut self, line: &str) -> Applied {
        let line = line.trim();
        if !line.starts_with('$') {
            return Applied::Ignored;
        }
        match parse(line) {
            Ok(Sentence::Gga(g)) => {
                self.accepted += 1;
                self.quality = g.quality;
                self.satellites = g.satellites;
                self.has_fix = g.quality > 0;
                if self.has_fix {
                    self.latitude = g.latitude.or(self.latitude);
                    self.longitude = g.longitude.or(self.longitude);
                    self.altitude = g.altitude;
                }
                Applied::Position
            }
            Ok(Sentence::Rmc(r)) => {
                self.accepted += 1;
                self.has_fix = r.valid;
                if r.valid {
                    self.latitude = r.latitude.or(self.latitude);
                    self.longitude = r.longitude.or(self.longitude);
                    self.speed_mps = r.speed_knots.map(|k| k * KNOT_MPS);
                }
                Applied::Position
            }
            Ok(Sentence::Other(_)) => {
                self.accepted += 1;
                Applied::Other
            }
            Err(e) => {
                self.refused += 1;
                Applied::Refused(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        matches!(a, Some(a) if (a - b).abs() < 1e-9)
    }

    // The classic examples of NMEA-0183 references.
    const GGA: &str = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47";
    const RMC: &str = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A";
    const RMC_WEST: &str = "$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68";
    // u-blox receiver description examples.
    const UBLOX_GGA: &str = "$GPGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*5B";
    const UBLOX_RMC: &str = "$GPRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A*57";
    // The same with the multi-constellation talker GN (checksums adjusted).
    const GN_GGA: &str = "$GNGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*45";
    const GN_RMC: &str = "$GNRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A*49";
    // What a u-blox receiver sends without a fix.
    const NOFIX_GGA: &str = "$GPGGA,,,,,,0,00,99.99,,,,,,*48";
    const NOFIX_RMC: &str = "$GPRMC,,V,,,,,,,,,,N*53";

    #[test]
    fn gga() {
        match parse(GGA).unwrap() {
            Sentence::Gga(g) => {
                assert!(close(g.latitude, 48.0 + 7.038 / 60.0));
                assert!(close(g.longitude, 11.0 + 31.0 / 60.0));
                assert_eq!(g.quality, 1);
                assert_eq!(g.satellites, 8);
                assert_eq!(g.hdop, Some(0.9));
                assert_eq!(g.altitude, Some(545.4));
            }
            s => panic!("{:?}", s),
        }
    }

    #[test]
    fn rmc() {
        match parse(RMC).unwrap() {
            Sentence::Rmc(r) => {
                assert!(r.valid);
                assert!(close(r.latitude, 48.1173));
                assert_eq!(r.speed_knots, Some(22.4));
                assert_eq!(r.course, Some(84.4));
            }
            s => panic!("{:?}", s),
        }
        match parse(RMC_WEST).unwrap() {
            Sentence::Rmc(r) => {
                assert!(close(r.latitude, 49.0 + 16.45 / 60.0));
                assert!(close(r.longitude, -(123.0 + 11.12 / 60.0)));
            }
            s => panic!("{:?}", s),
        }
    }

    #[test]
    fn gn_talker_parses_like_gp() {
        assert_eq!(parse(GN_GGA).unwrap(), parse(UBLOX_GGA).unwrap());
        assert_eq!(parse(GN_RMC).unwrap(), parse(UBLOX_RMC).unwrap());
        let s = "$GNGGA,235959.00,3352.12800,S,15112.55600,E,2,12,0.8,-12.3,M,22.1,M,1.0,0000*59";
        match parse(s).unwrap() {
            Sentence::Gga(g) => {
                assert!(close(g.latitude, -(33.0 + 52.128 / 60.0)));
                assert!(close(g.longitude, 151.0 + 12.556 / 60.0));
                assert_eq!((g.quality, g.satellites, g.altitude), (2, 12, Some(-12.3)));
            }
            s => panic!("{:?}", s),
        }
    }

    #[test]
    fn checksums() {
        assert_eq!(verify("$GPGGA,1*3a\r\n").map_err(|e| e.to_string()), Err("NMEA checksum mismatch: sentence says 3A, data gives 4B".into()));
        assert_eq!(parse(&GGA.replace("*47", "*46")), Err(NmeaError::BadChecksum { want: 0x46, got: 0x47 }));
        assert_eq!(parse(&GGA.replace("545.4", "545.5")).unwrap_err(), NmeaError::BadChecksum { want: 0x47, got: 0x46 });
        assert_eq!(parse(&GGA[..GGA.len() - 3]), Err(NmeaError::NoChecksum));
        assert_eq!(parse("$GPGGA,1*4"), Err(NmeaError::NoChecksum));
        assert_eq!(parse("GPGGA,1*47"), Err(NmeaError::NotASentence));
        assert!(parse(&format!("{}\r\n", GGA)).is_ok(), "CR LF is trimmed");
        assert_eq!(parse("$GPGSV,1,1,00*79").unwrap(), Sentence::Other("GPGSV".into()));
    }

    #[test]
    fn bad_fields() {
        let bad = "$GPGGA,1,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,";
        let line = format!("{}*{:02X}", bad, checksum(&bad.as_bytes()[1..]));
        assert_eq!(parse(&line), Err(NmeaError::BadField("latitude")));
        let bad = "$GPGGA,1,4807.038,Q,01131.000,E,1,08,0.9,545.4,M,46.9,M,,";
        let line = format!("{}*{:02X}", bad, checksum(&bad.as_bytes()[1..]));
        assert_eq!(parse(&line), Err(NmeaError::BadField("latitude")));
    }

    #[test]
    fn fix_merges_and_forgets_position_without_fix() {
        let mut f = Fix::default();
        assert_eq!(f.apply_line("{\"class\":\"VERSION\"}"), Applied::Ignored, "gpsd JSON is ignored");
        assert_eq!(f.apply_line(GGA), Applied::Position);
        assert_eq!(f.apply_line(RMC), Applied::Position);
        assert!(f.has_fix);
        assert_eq!((f.quality, f.satellites, f.altitude), (1, 8, Some(545.4)));
        assert!(close(f.speed_mps, 22.4 * 1852.0 / 3600.0));
        assert_eq!(f.apply_line(NOFIX_GGA), Applied::Position);
        assert!(!f.has_fix);
        assert_eq!((f.quality, f.satellites), (0, 0));
        assert_eq!(f.apply_line(NOFIX_RMC), Applied::Position);
        assert!(!f.has_fix);
        assert!(matches!(f.apply_line("$GPGGA,garbage*00"), Applied::Refused(_)));
        assert_eq!((f.accepted, f.refused), (4, 1));
    }
}
