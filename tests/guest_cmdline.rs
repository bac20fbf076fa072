//! `qemu::guest_cmdline_for`: which QEMU versions get our guest's `tlbflush=1`
//! (qemu-fixtures/README.md, "QEMU 11.1.3 under TCG loses guest memory in post-copy").

use postcopy_tools::qemu::guest_cmdline_for;

const GUEST: &str = "ro=64 hot=16 cold=64 rate=40 beat=20";

#[test]
fn qemu_11_1_gets_tlbflush() {
    assert_eq!(
        guest_cmdline_for("11.1.3 (Debian 1:11.1.3+ds-1)", GUEST),
        (format!("{GUEST} tlbflush=1"), true)
    );
    assert_eq!(
        guest_cmdline_for("10.1.0", "ro=32 "),
        ("ro=32 tlbflush=1".to_string(), true)
    );
}

#[test]
fn qemu_10_0_and_older_keep_the_line() {
    for v in [
        "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)",
        "7.2.22 (Debian 1:7.2+dfsg-7+deb12u16)",
    ] {
        assert_eq!(
            guest_cmdline_for(v, GUEST),
            (GUEST.to_string(), false),
            "{v}"
        );
    }
}

#[test]
fn an_explicit_tlbflush_wins() {
    for g in [format!("{GUEST} tlbflush=0"), format!("tlbflush=1 {GUEST}")] {
        assert_eq!(guest_cmdline_for("11.1.3", &g), (g.clone(), false));
    }
}

#[test]
fn an_unknown_version_keeps_the_line() {
    for v in ["unknown", "", "eleven"] {
        assert_eq!(
            guest_cmdline_for(v, GUEST),
            (GUEST.to_string(), false),
            "{v:?}"
        );
    }
}
