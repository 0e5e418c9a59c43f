//! Replays the fuzz seed corpus and every saved fuzz regression input through the same code
//! the fuzz targets run (`allman::fuzzing`). A crash found by fuzzing is kept here for good.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let data = std::fs::read(entry.path()).expect("read input");
            run(&data);
            count += 1;
        }
    }
    count
}

#[test]
fn http_decoder_inputs_never_panic() {
    assert!(
        replay("http_decode", allman::fuzzing::http_decode) >= 5,
        "seed corpus present"
    );
}

#[test]
fn jsonrpc_inputs_never_panic() {
    assert!(
        replay("jsonrpc", allman::fuzzing::jsonrpc) >= 5,
        "seed corpus present"
    );
}

#[test]
fn hostile_json_shapes_never_panic() {
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge_string = format!("{{\"query\":\"{}\"}}", "a".repeat(1 << 20));
    let inputs: Vec<Vec<u8>> = vec![
        nested.into_bytes(),
        huge_string.into_bytes(),
        b"{\"to\":[\"\\u0000\",\"\\ud800\"]}".to_vec(),
        b"\xff\xfe\x00{".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":99999999999999999999999,\"method\":\"ping\"}".to_vec(),
        b"{\"from_agent\":1e999,\"to\":{},\"limit\":-0}".to_vec(),
    ];
    for input in inputs {
        allman::fuzzing::jsonrpc(&input);
        allman::fuzzing::http_decode(&input);
    }
}
