//! RFC 6238 one-time codes (SHA-1, 6 digits, 30-second steps, one step of skew either
//! way), the `otpauth://` URI authenticator apps read, and that URI as a QR code.

use std::io::Write;

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Seconds per step.
pub const STEP: u64 = 30;
/// Bytes of secret: 160 bits, as RFC 4226 recommends.
pub const SECRET_LEN: usize = 20;

/// A fresh random secret.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_LEN];
    rand::fill(&mut secret[..]);
    secret
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(Secret::from(secret.to_vec()))
        // A colon separates issuer from account in the URI label; neither may hold one.
        .with_issuer(Some(issuer.replace(':', "")))
        .with_account_name(account.replace(':', ""))
        .build()
        .map_err(|e| anyhow::anyhow!("TOTP: {e}"))
}

/// The time step `code` matches at `unix_time` (±1 step), if any. Replay protection is
/// the caller's: a step may be accepted once.
pub fn check(secret: &[u8], code: &str, unix_time: u64) -> Option<u64> {
    // People type "123 456" as apps show it.
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if !is_code_shaped(&code) {
        return None;
    }
    totp(secret, "x", "x").ok()?.check(&code, unix_time)
}

/// Six digits, as every code this service checks has.
pub fn is_code_shaped(code: &str) -> bool {
    code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())
}

/// The code for `unix_time` (tests and the CLI use it; the server only checks).
pub fn code_at(secret: &[u8], unix_time: u64) -> anyhow::Result<String> {
    Ok(totp(secret, "x", "x")?.generate(unix_time).to_string())
}

/// The secret in base32, as typed into an app by hand.
pub fn base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// The secret from its base32 form.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    Secret::try_from_base32(text).ok().map(|s| s.as_ref().to_vec())
}

/// `otpauth://totp/Issuer:account?secret=...&issuer=Issuer&algorithm=SHA1&digits=6&period=30`
pub fn uri(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<String> {
    totp(secret, issuer, account)?
        .to_url()
        .map_err(|e| anyhow::anyhow!("TOTP URI: {e}"))
}

/// The modules of `text` as a QR code: (width, dark modules row by row).
fn modules(text: &str) -> anyhow::Result<(usize, Vec<bool>)> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)?;
    Ok((
        code.width(),
        code.to_colors().into_iter().map(|c| c == qrcode::Color::Dark).collect(),
    ))
}

/// `text` as an SVG QR code.
pub fn qr_svg(text: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)?;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build())
}

/// `text` as a QR code of Unicode half blocks (two modules a character, with the
/// quiet zone), for a terminal: dark modules are drawn, so it reads on a light
/// background (and most phone scanners read it inverted too).
pub fn qr_unicode(text: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)?;
    Ok(code.render::<qrcode::render::unicode::Dense1x2>().build())
}

/// `text` as a PNG QR code: 1-bit greyscale, `scale` pixels a module, a 4-module
/// quiet zone.
pub fn qr_png(text: &str, scale: usize) -> anyhow::Result<Vec<u8>> {
    let (width, dark) = modules(text)?;
    let quiet = 4;
    let side = (width + 2 * quiet) * scale;
    let row_bytes = side.div_ceil(8);
    let mut raw = Vec::with_capacity((row_bytes + 1) * side);
    for y in 0..side {
        raw.push(0); // filter: none
        let my = (y / scale).checked_sub(quiet).filter(|&m| m < width);
        let mut row = vec![0xffu8; row_bytes];
        for x in 0..side {
            let mx = (x / scale).checked_sub(quiet).filter(|&m| m < width);
            if let (Some(mx), Some(my)) = (mx, my)
                && dark[my * width + mx]
            {
                row[x / 8] &= !(0x80 >> (x % 8));
            }
        }
        raw.extend_from_slice(&row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let side32 = u32::try_from(side)?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side32.to_be_bytes());
    ihdr.extend_from_slice(&side32.to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // bit depth 1, greyscale, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr[..]), (b"IDAT", &idat[..]), (b"IEND", &[][..])] {
        png.extend_from_slice(&u32::try_from(data.len())?.to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        png.extend_from_slice(&crc.finalize().to_be_bytes());
    }
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 (the last six digits of its 8-digit codes).
    #[test]
    fn rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code_at(secret, time).unwrap(), code);
            assert_eq!(check(secret, code, time), Some(time / STEP));
        }
    }

    #[test]
    fn one_step_of_skew_and_no_more() {
        let secret = new_secret();
        let now = 1_800_000_000;
        let code = code_at(&secret, now).unwrap();
        assert_eq!(check(&secret, &code, now + STEP), Some(now / STEP));
        assert_eq!(check(&secret, &code, now - STEP), Some(now / STEP));
        assert_eq!(check(&secret, &code, now + 2 * STEP), None);
        for bad in ["", "12345", "1234567", "abcdef", "12 456"] {
            assert_eq!(check(&secret, bad, now), None, "{bad}");
        }
    }

    #[test]
    fn uri_and_qr_codes() {
        let secret = new_secret();
        let uri = uri(&secret, "Portcullis", "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/Portcullis:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={}", base32(&secret))));
        assert!(uri.contains("issuer=Portcullis"));
        assert_eq!(from_base32(&base32(&secret)).unwrap(), secret);
        assert!(qr_svg(&uri).unwrap().contains("<svg"));
        let png = qr_png(&uri, 4).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
    }
}
