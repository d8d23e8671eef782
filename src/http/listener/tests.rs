//! Unit tests of `http/listener.rs`.

#[test]
fn the_backlog_follows_somaxconn() {
    let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_ne!(listener.local_addr().unwrap().port(), 0);
    if let Ok(text) = std::fs::read_to_string("/proc/sys/net/core/somaxconn") {
        assert_eq!(super::backlog(), text.trim().parse::<i32>().unwrap());
    }
}
