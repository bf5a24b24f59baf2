//! The shared test support itself (tests/support): the metrics parser, and the port
//! retry for programs that must be told their port.

use crate::support::{
    listens_on, parse_metric, spawn_server, start_on_port, start_on_some_port, tickstream_command,
    TempDir,
};

#[test]
fn a_series_is_found_by_its_exact_name_and_labels() {
    let exposition = "# HELP a_total Things.\n# TYPE a_total counter\na_total 7\n\
                      a_total_more 9\nb{feed=\"x\",reason=\"y\"} 1.5\nb{feed=\"z\"} 2 1700000000\n";

    assert_eq!(parse_metric::<u64>(exposition, "a_total"), Some(7));
    assert_eq!(parse_metric::<u64>(exposition, "a_total_more"), Some(9));
    assert_eq!(
        parse_metric::<f64>(exposition, r#"b{feed="x",reason="y"}"#),
        Some(1.5)
    );
    assert_eq!(
        parse_metric::<u64>(exposition, r#"b{feed="z"}"#),
        Some(2),
        "a timestamp after the value is not part of it"
    );
    assert_eq!(parse_metric::<u64>(exposition, "a"), None, "no prefixes");
    assert_eq!(
        parse_metric::<u64>(exposition, "b"),
        None,
        "labels are part of the name"
    );
}

#[test]
fn a_program_told_a_taken_port_moves_to_another_it_really_listens_on() {
    // Arrange: a port held by a listener of this test, and the binary as a program
    // that must be told its port (as redis-server must).
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let dir = TempDir::new("support-check");
    let command_for = |port: u16| {
        let mut command = tickstream_command();
        command
            .current_dir(dir.path())
            .env("TICKSTREAM__SERVER__PORT", port.to_string())
            .env("TICKSTREAM__SIMULATOR__ENABLED", "false");
        command
    };

    // Act
    let on_taken = start_on_port(
        "tickstream",
        &mut command_for(taken),
        &dir.join("a.log"),
        taken,
    );
    let (process, port) = start_on_some_port("tickstream", &dir.join("b.log"), command_for);

    // Assert
    assert!(on_taken.is_err(), "the holder's port is reported taken");
    assert_ne!(port, taken);
    assert!(listens_on(process.id(), port));
    assert!(
        !listens_on(process.id(), taken),
        "a connection there reaches the holder"
    );
}

#[test]
#[should_panic(expected = "exited during start-up")]
fn a_server_that_cannot_start_fails_the_test_at_once() {
    let mut command = tickstream_command();
    command.env("TICKSTREAM__STREAM__MAX_HZ", "fast");
    spawn_server("tickstream", command);
}
