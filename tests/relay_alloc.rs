//! The relay's fan-out shares each publisher message among its subscribers:
//! the server's heap allocations per published message do not grow with
//! the number of subscribers, nor with the number of fragments a message
//! takes (it used to copy every fragment once per subscriber).

#[path = "support/relay_lab.rs"]
mod relay_lab;
mod support;

use relay_lab::Lab;

const MESSAGES: u32 = 40;

/// Server allocations per published message, after a warm-up batch.
fn allocations_per_message(
    subscribers: usize,
    input: fn(u32) -> rtmfp::client::stream::StreamInput,
) -> f64 {
    let mut lab = Lab::new(subscribers);
    lab.batch(MESSAGES, input);
    let before = lab.allocs;
    lab.batch(MESSAGES, input);
    (lab.allocs - before) as f64 / f64::from(MESSAGES)
}

fn video_5k(i: u32) -> rtmfp::client::stream::StreamInput {
    // Five fragments a message.
    relay_lab::video(i, 5000)
}

#[test]
fn a_message_is_one_allocation_whatever_the_number_of_subscribers() {
    for (what, input) in [
        ("video 5 kB", video_5k as fn(u32) -> _),
        ("data", relay_lab::data),
    ] {
        let one = allocations_per_message(1, input);
        let many = allocations_per_message(12, input);
        eprintln!("{what}: {one:.2} allocations per message to 1 subscriber, {many:.2} to 12");
        // A copy per subscriber would add 11 (55 for five fragments); the
        // margin allows for bookkeeping that is not per message.
        assert!(
            many <= one + 1.0,
            "{what}: {many:.2} allocations per message to 12 subscribers, {one:.2} to 1"
        );
        assert!(
            one <= 3.0,
            "{what}: {one:.2} allocations per message to 1 subscriber"
        );
    }
}
