//! The kernel's verifier on the committed XDP object, through
//! `bpf/verifier-stats.sh` (bpftool, verifier log statistics): every program
//! loads, and each stays below 7/8 of the verifier's limits (1,000,000
//! instructions processed, 512 bytes of stack over its call chain), so there
//! is room for what is added next. Prints the numbers (README "XDP fast path").
//! Needs root and bpftool; fails, never skips, without them.

use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/verifier-stats.sh");

/// (program, instructions processed, stack bytes summed over the frames).
fn stats(object: &str) -> Vec<(String, u64, u64)> {
    let out = Command::new("bash")
        .args([SCRIPT, object])
        .output()
        .expect("run bpf/verifier-stats.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verifier-stats.sh {object}: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{text}");
    text.lines()
        .map(|l| {
            let (name, rest) = l.split_once(": ").expect("PROGRAM: ...");
            let words: Vec<&str> = rest.split_whitespace().collect();
            let insns = words[0].parse().expect("instructions");
            let at = words.iter().position(|w| *w == "stack").expect("stack");
            let stack = words[at + 1]
                .split('+')
                .map(|f| f.parse::<u64>().expect("stack frame"))
                .sum();
            (name.to_owned(), insns, stack)
        })
        .collect()
}

#[test]
fn every_program_loads_with_room_to_spare() {
    let object = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/synguard_xdp.o");
    let programs = stats(object);
    let names: Vec<&str> = programs.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["sg_fast_path", "sg_server_port"]);
    for (name, insns, stack) in &programs {
        assert!(
            *insns > 0 && *insns <= 875_000,
            "{name}: {insns} instructions processed"
        );
        assert!(*stack <= 448, "{name}: {stack} bytes of stack");
    }
}
