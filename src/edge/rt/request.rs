//! The request the Worker was sent, as the runtime handed it over. `worker::Request` reads every
//! property up front, `request.cf` among them (a JSON object the runtime builds on each read:
//! an eighth of a no-op request in issue 15's profile), which only a new user's region needs.
//! This reads each thing when asked, but for the URL, which the router reads for every request
//! (once, here).

use worker::{ByteStream, Cf, Headers, Method, Url};

pub struct Request {
    inner: web_sys::Request,
    headers: Headers,
    url: String,
}

impl From<web_sys::Request> for Request {
    fn from(inner: web_sys::Request) -> Request {
        let headers = Headers(inner.headers());
        let url = inner.url();
        Request {
            inner,
            headers,
            url,
        }
    }
}

impl Request {
    pub fn inner(&self) -> &web_sys::Request {
        &self.inner
    }

    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The method as `worker` names it (an unknown one reads as GET: `routes::Method::parse`
    /// of `inner().method()` is the router's check).
    pub fn method(&self) -> Method {
        Method::from(self.inner.method())
    }

    /// The URL's path, as serialized: percent-encoded, never empty, without query or fragment.
    pub fn path(&self) -> &str {
        crate::routes::path_of_url(&self.url)
    }

    /// The URL as the runtime serialized it.
    pub fn url_text(&self) -> &str {
        &self.url
    }

    pub fn url(&self) -> worker::Result<Url> {
        Url::parse(&self.url).map_err(|e| worker::Error::RustError(e.to_string()))
    }

    /// Cloudflare's properties of the request (`request.cf`), read now.
    pub fn cf(&self) -> Option<Cf> {
        worker::worker_sys::ext::RequestExt::cf(&self.inner).map(Cf::from)
    }

    /// The body as a stream of chunks; an error when there is none.
    pub fn stream(&mut self) -> worker::Result<ByteStream> {
        self.inner
            .body()
            .map(ByteStream::from)
            .ok_or_else(|| worker::Error::RustError("no body for request".into()))
    }
}
