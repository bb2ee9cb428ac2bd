//! ACI reading on arbitrary bytes: `validate` and `read_manifest_bytes` must
//! never panic (nor hang, nor allocate without bound) whatever the input:
//! any compression magic, truncated streams, malformed tar headers.
#![no_main]

use berth_appc::aci;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = aci::validate(data) {
        // A valid report is self-consistent.
        assert_eq!(
            report.is_valid(),
            report.problems.is_empty() && report.manifest.is_some()
        );
        if let Some(bytes) = &report.manifest_bytes {
            // read_manifest_bytes finds the same manifest (the first one).
            if report.problems.is_empty() {
                assert_eq!(aci::read_manifest_bytes(data).ok().as_ref(), Some(bytes));
            }
        }
    }
    let _ = aci::read_manifest_bytes(data);
});
