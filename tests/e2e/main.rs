//! End-to-end tests: the real app on its real stores, seen through headless Chromium.

mod overview;
