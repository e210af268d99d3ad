//! Which remote_write a body claims to be, from its `Content-Type`.
//!
//! Only remote_write 1.0 (`prometheus.WriteRequest`) is decoded. A 2.0 body
//! (`proto=io.prometheus.write.v2.Request`) has a different message layout that scans as
//! zero series under the 1.0 decoder, so without this check it would be answered 2xx
//! and lost. Receivers answer `415 Unsupported Media Type` with [`check_content_type`]'s
//! message instead, as the 2.0 spec asks of a 1.0-only receiver.

/// The `Content-Type` of a remote_write 1.0 body.
pub const CONTENT_TYPE_V1: &str = "application/x-protobuf";

/// `Ok` for a body this crate's [`crate::proto::prometheus::WriteRequest`] decodes: no
/// `Content-Type`, `application/x-protobuf`, or with `proto=prometheus.WriteRequest`.
/// `Err` says what was sent and what is supported.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), String> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let mut parts = value.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if !media.is_empty() && !media.eq_ignore_ascii_case(CONTENT_TYPE_V1) {
        return Err(format!(
            "Content-Type {value:?} is not remote_write: send {CONTENT_TYPE_V1} \
             (remote_write 1.0, prometheus.WriteRequest)"
        ));
    }
    for param in parts {
        let Some((name, proto)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("proto") {
            let proto = proto.trim().trim_matches('"');
            if proto != "prometheus.WriteRequest" {
                return Err(format!(
                    "remote_write message {proto:?} is not supported: this receiver speaks \
                     remote_write 1.0 (proto=prometheus.WriteRequest) only"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_passes_and_version_2_is_refused_by_name() {
        for ok in [
            None,
            Some("application/x-protobuf"),
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
            Some("Application/X-Protobuf; proto=\"prometheus.WriteRequest\""),
        ] {
            assert_eq!(check_content_type(ok), Ok(()), "{ok:?}");
        }
        let v2 = check_content_type(Some(
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        ))
        .expect_err("2.0");
        assert!(v2.contains("io.prometheus.write.v2.Request"), "{v2}");
        assert!(v2.contains("remote_write 1.0"), "{v2}");
        assert!(check_content_type(Some("application/json")).is_err());
    }
}
