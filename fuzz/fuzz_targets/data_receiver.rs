//! Fuzz target: the DATA receiver must give the same result whatever the chunking, and
//! normalized output must contain only CRLF line endings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxfleet_smtp::data::{BareLineEndings, DataReceiver};

fn run(mode: BareLineEndings, input: &[u8], split: usize) -> (Vec<u8>, usize, bool) {
    let mut receiver = DataReceiver::new(mode);
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut finished = false;
    for chunk in [&input[..split], &input[split..]] {
        if finished {
            break;
        }
        let fed = receiver.feed(chunk, &mut out);
        assert!(fed.consumed <= chunk.len());
        consumed += fed.consumed;
        finished = fed.finished;
        if !finished {
            assert_eq!(fed.consumed, chunk.len(), "an unfinished feed consumes everything");
        }
    }
    (out, consumed, finished)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let split = split as usize % (input.len() + 1);
    for mode in [BareLineEndings::Reject, BareLineEndings::Normalize] {
        let whole = run(mode, input, input.len());
        let halves = run(mode, input, split);
        assert_eq!(whole, halves, "chunking changed the result");
        if mode == BareLineEndings::Normalize {
            let out = &whole.0;
            for (i, byte) in out.iter().enumerate() {
                if *byte == b'\n' {
                    assert!(i > 0 && out[i - 1] == b'\r', "bare LF in normalized output");
                }
                if *byte == b'\r' {
                    assert!(out.get(i + 1) == Some(&b'\n') || i + 1 == out.len(), "bare CR");
                }
            }
        }
    }
});
