//! Layer ids. HCS identifies a layer by a GUID that Windows derives from the layer folder name
//! (vmcompute.dll `NameToGuid`, whose algorithm is not documented). On Windows hako calls it
//! (`ffi::name_to_guid`); elsewhere `hako hcs-doc` uses a stand-in: an RFC 4122 version-5
//! (SHA-1, name-based) UUID of the folder name in a hako namespace. The stand-in is stable and
//! well-formed but is NOT the id Windows computes; the output says so.

/// How layer ids are computed: a function from the layer folder name to its GUID.
pub type LayerIdFn = fn(folder_name: &str) -> Result<String, String>;

/// The namespace of stand-in layer ids.
const HAKO_LAYER_NAMESPACE: [u8; 16] =
    [0x5c, 0x1e, 0x8f, 0x3a, 0x92, 0x4b, 0x4d, 0x27, 0x8e, 0x61, 0x0b, 0x7a, 0x4c, 0x9d, 0x2e, 0x13];

/// The stand-in layer id used off Windows: a version-5 UUID of `folder_name`.
pub fn placeholder_layer_id(folder_name: &str) -> Result<String, String> {
    let mut data = Vec::with_capacity(16 + folder_name.len());
    data.extend_from_slice(&HAKO_LAYER_NAMESPACE);
    data.extend_from_slice(folder_name.as_bytes());
    let hash = sha1(&data);
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    ))
}

/// SHA-1 (FIPS 180-4), enough for name-based UUIDs; not for security.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | ((!b) & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let temp = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{:02x}", x)).collect()
    }

    #[test]
    fn sha1_matches_fips_vectors() {
        assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn placeholder_ids_are_stable_v5_guids() {
        let a = placeholder_layer_id("layer1").unwrap_or_default();
        let b = placeholder_layer_id("layer1").unwrap_or_default();
        let c = placeholder_layer_id("layer2").unwrap_or_default();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(crate::translate::paths::is_guid(&a), "{}", a);
        assert_eq!(&a[14..15], "5");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }
}
