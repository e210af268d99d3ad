//! The AWS SDK config the Kinesis and Firehose sinks, the relay and SigV4 signing
//! of remote_write share.

/// An AWS SDK config from the default chain (environment, profile, instance role),
/// with `region` and an optional endpoint.
pub async fn sdk_config(region: &str, endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
