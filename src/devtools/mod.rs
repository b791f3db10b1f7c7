//! devtools
