//! Dark (default, for ops rooms and wall screens) or light theme, remembered in a cookie so the
//! server renders the chosen one and the page never flashes the wrong colours.

use leptos::prelude::*;

const COOKIE: &str = "opsdeck_theme";

/// The two themes; the stylesheet swaps its colour variables on `data-theme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    #[default]
    Dark,
    Light,
}

impl Theme {
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Dark => "dark",
            Theme::Light => "light",
        }
    }

    pub fn toggled(self) -> Self {
        match self {
            Theme::Dark => Theme::Light,
            Theme::Light => Theme::Dark,
        }
    }

    /// Reads the theme from a `Cookie` header value; anything unexpected means the default.
    pub fn from_cookie_header(header: &str) -> Self {
        match cookie_in(header, COOKIE) {
            Some("light") => Theme::Light,
            _ => Theme::Dark,
        }
    }
}

/// The value of cookie `name` in a `Cookie` header (or `document.cookie`) string.
pub fn cookie_in<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// The cookies of this page: the request's on the server, `document.cookie` in the browser.
pub fn page_cookies() -> String {
    #[cfg(feature = "ssr")]
    {
        use_context::<http::request::Parts>()
            .and_then(|parts| parts.headers.get(http::header::COOKIE)?.to_str().ok().map(str::to_owned))
            .unwrap_or_default()
    }
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    {
        use wasm_bindgen::JsCast;
        document().dyn_into::<web_sys::HtmlDocument>().ok().and_then(|d| d.cookie().ok()).unwrap_or_default()
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        String::new()
    }
}

/// The theme the request (server) or the document (browser) carries.
pub fn initial_theme() -> Theme {
    Theme::from_cookie_header(&page_cookies())
}

/// Remembers the choice for a year.
fn remember(theme: Theme) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Ok(doc) = document().dyn_into::<web_sys::HtmlDocument>() {
            let _ = doc.set_cookie(&format!("{COOKIE}={}; path=/; max-age=31536000; samesite=lax", theme.as_str()));
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = theme;
}

/// The toggle button; it says what it will switch to.
#[component]
pub fn ThemeToggle(theme: RwSignal<Theme>) -> impl IntoView {
    view! {
        <button
            class="theme-toggle"
            type="button"
            aria-label=move || match theme.get() {
                Theme::Dark => "Switch to the light theme",
                Theme::Light => "Switch to the dark theme",
            }
            on:click=move |_| {
                let next = theme.get_untracked().toggled();
                theme.set(next);
                remember(next);
            }
        >
            {move || match theme.get() {
                Theme::Dark => "☀ Light",
                Theme::Light => "☾ Dark",
            }}
        </button>
    }
}

#[cfg(test)]
mod tests {
    use super::Theme;

    #[test]
    fn theme_cookie_is_read_among_other_cookies_and_defaults_to_dark() {
        assert_eq!(Theme::from_cookie_header("a=1; opsdeck_theme=light; b=2"), Theme::Light);
        assert_eq!(Theme::from_cookie_header("opsdeck_theme=dark"), Theme::Dark);
        assert_eq!(Theme::from_cookie_header("opsdeck_theme=<script>"), Theme::Dark);
        assert_eq!(Theme::from_cookie_header(""), Theme::Dark);
    }
}
