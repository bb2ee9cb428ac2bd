//! Manifest parsing on arbitrary bytes: the strict parsers (image, pod, any)
//! and their lenient twins must never panic, and whatever the strict parser
//! accepts must serialise to JSON that parses back to an equal value.
#![no_main]

use berth_appc::{lenient, AnyManifest, ImageManifest, PodManifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ImageManifest::from_json(data) {
        let back = ImageManifest::from_json(m.to_json().as_bytes())
            .unwrap_or_else(|e| panic!("re-parse of {}: {e}", m.to_json()));
        assert_eq!(m, back);
        let pretty = ImageManifest::from_json(m.to_json_pretty().as_bytes()).expect("pretty");
        assert_eq!(m, pretty);
    }
    if let Ok(m) = PodManifest::from_json(data) {
        let back = PodManifest::from_json(m.to_json().as_bytes())
            .unwrap_or_else(|e| panic!("re-parse of {}: {e}", m.to_json()));
        assert_eq!(m, back);
    }
    if let Ok(m) = AnyManifest::from_json(data) {
        let back = AnyManifest::from_json(m.to_json().as_bytes())
            .unwrap_or_else(|e| panic!("re-parse of {}: {e}", m.to_json()));
        assert_eq!(m, back);
    }
    let _ = lenient::ImageManifest::from_json(data);
    let _ = lenient::PodManifest::from_json(data);
    let _ = lenient::AnyManifest::from_json(data);
});
