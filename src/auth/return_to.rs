//! PLACEHOLDER until the routing branch lands.
use std::borrow::Cow;
/// PLACEHOLDER
pub fn safe_return_to(rd: Option<&str>) -> Cow<'static, str> {
    match rd {
        Some(r) if r.starts_with('/') && !r.starts_with("//") && !r.starts_with("/\\") && !r.chars().any(|c| c.is_control()) && !r.contains('%') => Cow::Owned(r.to_string()),
        _ => Cow::Borrowed("/"),
    }
}
/// PLACEHOLDER
pub fn original_url(uri: &http::Uri) -> String {
    uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into())
}
