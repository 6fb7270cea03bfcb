//! Pushing what the image step built. The build ran in the step's sandbox
//! and left an OCI image layout in the step's home; Gantry reads it from
//! outside and pushes it over the registry API (the OCI distribution spec)
//! with the credentials only it holds. The layout is the build's — the
//! Dockerfile's code wrote it — so it is read as hostile: no link is
//! followed, every blob must be a regular file of the size and digest the
//! manifest says, and the counts and sizes are bounded. The digest
//! recorded is the one Gantry computed over the manifest it sent.

use std::io::{Read, Seek};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::gitops::image::Repository;

/// The largest `index.json` or manifest read.
const MAX_DOCUMENT: u64 = 4 << 20;
/// The most blobs (config and layers) one image may have.
const MAX_BLOBS: usize = 256;
/// The largest blob pushed, and the largest image.
const MAX_BLOB: u64 = 16 << 30;
const MAX_IMAGE: u64 = 32 << 30;
/// The most of a registry's answer (an error, a token) that is read.
const MAX_ANSWER: usize = 64 << 10;
/// Waits for the registry: to connect, and between bytes of an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an image was not pushed (the step fails with it). Registry errors
/// name the host, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the build left no image: {0}")]
    Layout(String),
    #[error("registry {host}: {reason}")]
    Registry { host: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn layout(reason: impl Into<String>) -> ImageError {
    ImageError::Layout(reason.into())
}

/// A blob the image is made of.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The image the build left, read and checked.
#[derive(Debug)]
pub struct Image {
    /// The manifest's bytes, pushed as they are.
    pub manifest: Vec<u8>,
    pub media_type: String,
    /// `sha256:…` of `manifest`.
    pub digest: String,
    /// The config and the layers.
    pub blobs: Vec<Descriptor>,
}

impl Image {
    pub fn total_bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// The layout at `dir`: opened beneath it only, with no link followed
/// on the way (`openat2`), never a device or a pipe.
pub struct Layout {
    dir: OwnedFd,
}

/// Opens beneath a folder only: no link (nor `/proc` magic link) is
/// followed on the way, and no mount is crossed.
fn beneath(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .mode(Mode::empty())
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        )
}

impl Layout {
    /// The layout at `relative` in `base` — a folder the build wrote in
    /// (the step's home), whose own path is Gantry's: every part of
    /// `relative` is the build's, and none may be a link.
    pub fn open(base: &Path, relative: &str) -> Result<Layout, ImageError> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC);
        let base = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, base, how)
            .map_err(|e| layout(format!("the step's home: {e}")))?;
        let dir = nix::fcntl::openat2(
            &base,
            relative,
            beneath(OFlag::O_RDONLY | OFlag::O_DIRECTORY),
        )
        .map_err(|e| layout(format!("{relative}: {e} (links are not followed)")))?;
        Ok(Layout { dir })
    }

    /// A regular file at `relative`, beneath the layout.
    fn file(&self, relative: &str) -> Result<std::fs::File, ImageError> {
        let fd = nix::fcntl::openat2(
            &self.dir,
            relative,
            beneath(OFlag::O_RDONLY | OFlag::O_NONBLOCK),
        )
        .map_err(|e| layout(format!("{relative}: {e} (links are not followed)")))?;
        let file = std::fs::File::from(fd);
        if !file.metadata()?.is_file() {
            return Err(layout(format!("{relative} is not a regular file")));
        }
        Ok(file)
    }

    fn document(&self, relative: &str) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        self.file(relative)?
            .take(MAX_DOCUMENT + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(layout(format!(
                "{relative} is larger than {MAX_DOCUMENT} bytes"
            )));
        }
        Ok(bytes)
    }

    /// A blob, checked against its descriptor (size and digest) and
    /// rewound, ready to be sent.
    pub fn blob(&self, descriptor: &Descriptor) -> Result<std::fs::File, ImageError> {
        let hex = sha256_hex(&descriptor.digest)?;
        let relative = format!("blobs/sha256/{hex}");
        let mut file = self.file(&relative)?;
        let size = file.metadata()?.len();
        if size != descriptor.size {
            return Err(layout(format!(
                "{relative} holds {size} bytes where the manifest says {}",
                descriptor.size
            )));
        }
        let mut hasher = Sha256::new();
        std::io::copy(&mut (&mut file).take(MAX_BLOB), &mut hasher)?;
        let actual = lower_hex(&hasher.finalize());
        if actual != hex {
            return Err(layout(format!(
                "{relative} does not hash to its name (sha256:{actual})"
            )));
        }
        file.rewind()?;
        Ok(file)
    }

    /// The image the index names: one manifest, its config and layers.
    pub fn image(&self) -> Result<Image, ImageError> {
        let index: Index = serde_json::from_slice(&self.document("index.json")?)
            .map_err(|e| layout(format!("index.json: {e}")))?;
        let [entry] = index.manifests.as_slice() else {
            return Err(layout(format!(
                "index.json names {} images where one was built",
                index.manifests.len()
            )));
        };
        let hex = sha256_hex(&entry.digest)?;
        let manifest = self.document(&format!("blobs/sha256/{hex}"))?;
        let digest = format!("sha256:{}", lower_hex(&Sha256::digest(&manifest)));
        if digest != entry.digest || manifest.len() as u64 != entry.size {
            return Err(layout(
                "the manifest does not match the index's digest and size",
            ));
        }
        let parsed: Manifest =
            serde_json::from_slice(&manifest).map_err(|e| layout(format!("the manifest: {e}")))?;
        let media_type = parsed
            .media_type
            .or_else(|| (!entry.media_type.is_empty()).then(|| entry.media_type.clone()))
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_string());
        let mut blobs = vec![parsed.config];
        blobs.extend(parsed.layers);
        if blobs.len() > MAX_BLOBS {
            return Err(layout(format!("the image has more than {MAX_BLOBS} blobs")));
        }
        for blob in &blobs {
            sha256_hex(&blob.digest)?;
            if blob.size > MAX_BLOB {
                return Err(layout(format!(
                    "a blob of {} bytes is over the limit",
                    blob.size
                )));
            }
        }
        let total: u64 = blobs.iter().map(|b| b.size).fold(0, u64::saturating_add);
        if total > MAX_IMAGE {
            return Err(layout(format!(
                "the image's {total} bytes are over the limit of {MAX_IMAGE}"
            )));
        }
        Ok(Image {
            manifest,
            media_type,
            digest,
            blobs,
        })
    }
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex of a `sha256:<64 hex>` digest; anything else is refused (it
/// becomes a path and a URL).
fn sha256_hex(digest: &str) -> Result<&str, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(layout(format!(
            "{:?} is not a sha256 digest",
            digest.chars().take(80).collect::<String>()
        ))),
    }
}

/// A registry session for one repository: how to authenticate, found by
/// asking `/v2/` (anonymous, HTTP Basic, or a bearer token fetched from
/// the realm the registry names).
pub struct Registry {
    client: reqwest::Client,
    base: url::Url,
    repository: Repository,
    authorization: Option<String>,
}

/// `user:password`, as the secret holds it.
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    pub fn parse(secret: &str) -> Option<Credentials> {
        let (user, password) = secret.trim_end_matches(['\r', '\n']).split_once(':')?;
        (!user.is_empty()).then(|| Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

impl Registry {
    pub async fn connect(
        repository: &Repository,
        credentials: Option<&Credentials>,
    ) -> Result<Registry, ImageError> {
        let host = repository.registry.clone();
        let fail = |reason: String| ImageError::Registry {
            host: host.clone(),
            reason,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            // The registry is the one the pipeline named: a redirect could
            // carry the credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let base = url::Url::parse(&repository.base_url())
            .map_err(|_| fail("not a valid address".to_string()))?;
        let mut registry = Registry {
            client,
            base,
            repository: repository.clone(),
            authorization: None,
        };
        let ping = registry.url("/v2/")?;
        let response = registry
            .client
            .get(ping)
            .send()
            .await
            .map_err(|e| fail(format!("did not answer: {}", e.without_url())))?;
        match response.status() {
            status if status.is_success() => {}
            reqwest::StatusCode::UNAUTHORIZED => {
                let challenge = response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                registry.authorization = Some(registry.authorize(&challenge, credentials).await?);
            }
            status => return Err(fail(format!("/v2/ answered {status}"))),
        }
        Ok(registry)
    }

    /// The `Authorization` header the challenge asks for.
    async fn authorize(
        &self,
        challenge: &str,
        credentials: Option<&Credentials>,
    ) -> Result<String, ImageError> {
        let fail = |reason: String| self.error(reason);
        let basic = || {
            use base64::Engine;
            credentials.map(|c| {
                let pair = format!("{}:{}", c.user, c.password);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            })
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return basic().ok_or_else(|| {
                fail("asks for credentials: name a secret holding user:password in the step's `image.credentials`".to_string())
            });
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(fail(format!(
                "asks for an authentication Gantry does not speak ({scheme})"
            )));
        }
        let params = challenge_params(params);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| fail("names no token realm".to_string()))?;
        let mut realm = url::Url::parse(realm)
            .map_err(|_| fail("names a token realm that is not an address".to_string()))?;
        // The password goes there: over HTTPS, unless both the registry
        // and its realm are this host's loopback.
        let realm_loopback = matches!(realm.host_str(), Some("localhost" | "127.0.0.1"));
        if realm.scheme() != "https" && !(self.repository.is_loopback() && realm_loopback) {
            return Err(fail("names a token realm that is not HTTPS".to_string()));
        }
        {
            let mut query = realm.query_pairs_mut();
            if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
                query.append_pair("service", service);
            }
            query.append_pair(
                "scope",
                &format!("repository:{}:pull,push", self.repository.name),
            );
        }
        let mut request = self.client.get(realm);
        if let Some(basic) = basic() {
            request = request.header(reqwest::header::AUTHORIZATION, basic);
        }
        let response = request.send().await.map_err(|e| {
            fail(format!(
                "its token service did not answer: {}",
                e.without_url()
            ))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("its token service answered {status}")));
        }
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = serde_json::from_slice(&bounded(response).await)
            .map_err(|_| fail("its token service answered no token".to_string()))?;
        token
            .token
            .or(token.access_token)
            .map(|t| format!("Bearer {t}"))
            .ok_or_else(|| fail("its token service answered no token".to_string()))
    }

    fn error(&self, reason: String) -> ImageError {
        ImageError::Registry {
            host: self.repository.registry.clone(),
            reason,
        }
    }

    fn url(&self, path: &str) -> Result<url::Url, ImageError> {
        self.base
            .join(path)
            .map_err(|_| self.error(format!("{path} is not a valid address")))
    }

    /// A request, with the credentials only when it goes to the registry
    /// itself (an upload location may point elsewhere).
    fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        let same_origin = url.origin() == self.base.origin();
        let request = self.client.request(method, url);
        match &self.authorization {
            Some(auth) if same_origin => request.header(reqwest::header::AUTHORIZATION, auth),
            _ => request,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, ImageError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.error(format!("{what}: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = String::from_utf8_lossy(&bounded(response).await).into_owned();
        let excerpt: String = body.chars().take(300).collect();
        Err(self.error(format!("{what} answered {status}: {excerpt}")))
    }

    /// Sends one blob, unless the registry has it already: `true` when it
    /// was sent.
    pub async fn push_blob(
        &self,
        descriptor: &Descriptor,
        file: std::fs::File,
    ) -> Result<bool, ImageError> {
        let name = &self.repository.name;
        let digest = &descriptor.digest;
        let head = self.url(&format!("/v2/{name}/blobs/{digest}"))?;
        let exists = self
            .request(reqwest::Method::HEAD, head)
            .send()
            .await
            .map_err(|e| self.error(format!("blob check: {}", e.without_url())))?;
        if exists.status().is_success() {
            return Ok(false);
        }
        let start = self.url(&format!("/v2/{name}/blobs/uploads/"))?;
        let started = self
            .send(
                self.request(reqwest::Method::POST, start)
                    .header(reqwest::header::CONTENT_LENGTH, "0"),
                "starting an upload",
            )
            .await?;
        let location = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.error("started an upload without a Location".to_string()))?;
        let mut upload = self.base.join(location).map_err(|_| {
            self.error("answered an upload Location that is not an address".to_string())
        })?;
        // The build's bytes go to the registry itself, never to an address
        // a registry names elsewhere (Gantry sends them from the host, past
        // every fence a sandbox has).
        if upload.origin() != self.base.origin() {
            return Err(self.error(
                "answered an upload Location on another host; Gantry uploads to the registry itself only".to_string(),
            ));
        }
        upload.query_pairs_mut().append_pair("digest", digest);
        let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
        self.send(
            self.request(reqwest::Method::PUT, upload)
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, descriptor.size)
                .body(reqwest::Body::wrap_stream(stream)),
            &format!("uploading {digest}"),
        )
        .await?;
        Ok(true)
    }

    /// Puts the manifest under `tag`.
    pub async fn push_manifest(&self, image: &Image, tag: &str) -> Result<(), ImageError> {
        let name = &self.repository.name;
        let url = self.url(&format!("/v2/{name}/manifests/{tag}"))?;
        self.send(
            self.request(reqwest::Method::PUT, url)
                .header(reqwest::header::CONTENT_TYPE, &image.media_type)
                .body(image.manifest.clone()),
            "putting the manifest",
        )
        .await?;
        Ok(())
    }
}

/// The start of an answer's body, at most [`MAX_ANSWER`] bytes: a
/// registry's error or token is small, and one that is not is cut.
async fn bounded(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ANSWER);
    body
}

/// `realm="…",service="…"` as pairs.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            },
        };
        pairs.push((key, value.to_string()));
        rest = next.trim_start_matches([',', ' ']);
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> String {
        format!("sha256:{}", lower_hex(&Sha256::digest(bytes)))
    }

    /// A layout as buildah writes one: an index, a manifest, a config and
    /// one layer. Returns the layer's digest.
    fn write_layout(dir: &Path, layer: &[u8]) -> String {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let digest = digest_of(bytes);
            std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
            digest
        };
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let config_digest = put(config);
        let layer_digest = put(layer);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len() }],
        })
        .to_string();
        let manifest_digest = put(manifest.as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len() }],
        });
        std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
        layer_digest
    }

    fn read_all(dir: &Path) -> Result<Image, ImageError> {
        let name = dir.file_name().and_then(|n| n.to_str()).expect("a name");
        let layout = Layout::open(dir.parent().expect("a parent"), name)?;
        let image = layout.image()?;
        for blob in &image.blobs {
            layout.blob(blob)?;
        }
        Ok(image)
    }

    #[test]
    fn a_layout_as_buildah_writes_it_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        write_layout(dir.path(), b"layer bytes");
        let image = read_all(dir.path()).expect("a good layout");
        assert_eq!(image.blobs.len(), 2);
        assert_eq!(image.digest, digest_of(&image.manifest));
        assert_eq!(
            image.media_type,
            "application/vnd.oci.image.manifest.v1+json"
        );
    }

    #[test]
    fn a_blob_that_links_to_a_host_file_is_refused_even_with_the_right_digest() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("gantry.key");
        std::fs::write(&secret, b"host secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The build names the host file's own digest: only the link
        // could give it away, and it is not followed.
        let layer = write_layout(dir.path(), b"host secret");
        let blob = dir.path().join("blobs/sha256").join(&layer[7..]);
        std::fs::remove_file(&blob).unwrap();
        std::os::unix::fs::symlink(&secret, &blob).unwrap();
        let error = read_all(dir.path()).expect_err("a link").to_string();
        assert!(error.contains("links are not followed"), "{error}");
    }

    #[test]
    fn a_linked_blobs_folder_or_layout_is_refused() {
        let real = tempfile::tempdir().unwrap();
        write_layout(real.path(), b"layer");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            real.path().join("index.json"),
            dir.path().join("index.json"),
        )
        .unwrap();
        std::os::unix::fs::symlink(real.path().join("blobs"), dir.path().join("blobs")).unwrap();
        assert!(read_all(dir.path()).is_err());
        // The layout folder, or the build's folder above it, a link to a
        // folder elsewhere (another run's layout): refused.
        let home = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(real.path(), home.path().join("layout")).unwrap();
        assert!(Layout::open(home.path(), "layout").is_err());
        let work = real.path().parent().unwrap();
        std::os::unix::fs::symlink(work, home.path().join(".gantry-image")).unwrap();
        let inside = format!(
            ".gantry-image/{}",
            real.path().file_name().unwrap().to_str().unwrap()
        );
        let error = Layout::open(home.path(), &inside)
            .err()
            .expect("a linked folder")
            .to_string();
        assert!(error.contains("links are not followed"), "{error}");
    }

    #[test]
    fn a_blob_whose_bytes_or_size_do_not_match_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layer = write_layout(dir.path(), b"layer one");
        let blob = dir.path().join("blobs/sha256").join(&layer[7..]);
        std::fs::write(&blob, b"layer two").unwrap();
        let error = read_all(dir.path()).expect_err("changed").to_string();
        assert!(error.contains("does not hash to its name"), "{error}");
        std::fs::write(&blob, b"layer one and more").unwrap();
        let error = read_all(dir.path()).expect_err("grown").to_string();
        assert!(error.contains("where the manifest says"), "{error}");
    }

    #[test]
    fn a_blob_that_is_a_pipe_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let layer = write_layout(dir.path(), b"layer");
        let blob = dir.path().join("blobs/sha256").join(&layer[7..]);
        std::fs::remove_file(&blob).unwrap();
        nix::unistd::mkfifo(&blob, Mode::from_bits_truncate(0o600)).unwrap();
        let error = read_all(dir.path()).expect_err("a pipe").to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }

    #[test]
    fn an_index_naming_paths_or_several_images_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_layout(dir.path(), b"layer");
        let index = dir.path().join("index.json");
        let good: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
        let entry = good["manifests"][0].clone();
        std::fs::write(
            &index,
            serde_json::json!({ "manifests": [entry, entry] }).to_string(),
        )
        .unwrap();
        let error = read_all(dir.path()).expect_err("two").to_string();
        assert!(error.contains("names 2 images"), "{error}");
        let mut escaping = entry.clone();
        escaping["digest"] = "sha256:../../../../etc/passwd".into();
        std::fs::write(
            &index,
            serde_json::json!({ "manifests": [escaping] }).to_string(),
        )
        .unwrap();
        let error = read_all(dir.path()).expect_err("a path").to_string();
        assert!(error.contains("is not a sha256 digest"), "{error}");
        std::fs::write(&index, vec![b' '; (MAX_DOCUMENT + 10) as usize]).unwrap();
        let error = read_all(dir.path()).expect_err("huge").to_string();
        assert!(error.contains("larger than"), "{error}");
    }

    /// A registry that names an upload location on another host (an
    /// internal service, say): Gantry sends the build's bytes nowhere.
    #[tokio::test]
    async fn an_upload_location_on_another_host_is_refused() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let elsewhere = std::sync::Arc::new(AtomicBool::new(false));
        let reached = elsewhere.clone();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_port = other.local_addr().unwrap().port();
        tokio::spawn(async move {
            let router = axum::Router::new().fallback(move || {
                reached.store(true, Ordering::SeqCst);
                async { "taken" }
            });
            let _ = axum::serve(other, router).await;
        });
        let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = registry.local_addr().unwrap().port();
        tokio::spawn(async move {
            let router = axum::Router::new()
                .route("/v2/", axum::routing::get(|| async { "{}" }))
                .route(
                    "/v2/shop/blobs/uploads/",
                    axum::routing::post(move || async move {
                        (
                            axum::http::StatusCode::ACCEPTED,
                            [(
                                "location",
                                format!("http://localhost:{other_port}/internal"),
                            )],
                        )
                    }),
                )
                .fallback(|| async { axum::http::StatusCode::NOT_FOUND });
            let _ = axum::serve(registry, router).await;
        });
        let repository = Repository::parse(&format!("127.0.0.1:{port}/shop")).unwrap();
        let registry = Registry::connect(&repository, None)
            .await
            .expect("connects");
        let dir = tempfile::tempdir().unwrap();
        let layer = write_layout(dir.path(), b"the build's bytes");
        let file = std::fs::File::open(dir.path().join("blobs/sha256").join(&layer[7..])).unwrap();
        let descriptor = Descriptor {
            media_type: String::new(),
            digest: layer,
            size: 17,
        };
        let error = registry
            .push_blob(&descriptor, file)
            .await
            .expect_err("refused")
            .to_string();
        assert!(error.contains("on another host"), "{error}");
        assert!(!elsewhere.load(Ordering::SeqCst), "nothing was sent there");
    }

    #[test]
    fn bearer_challenges_are_read_with_their_quoted_values() {
        let params = challenge_params(
            r#"realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            params,
            vec![
                ("realm".into(), "https://auth.example.com/token".into()),
                ("service".into(), "registry.example.com".into()),
                ("scope".into(), "repository:a/b:pull".into()),
            ]
        );
    }

    #[test]
    fn credentials_are_user_colon_password() {
        let c = Credentials::parse("robot:s3cr:et\n").expect("parsed");
        assert_eq!((c.user.as_str(), c.password.as_str()), ("robot", "s3cr:et"));
        assert!(Credentials::parse("no-colon").is_none());
        assert!(Credentials::parse(":password").is_none());
    }

    #[test]
    fn digests_that_are_not_sha256_hex_are_refused() {
        assert!(sha256_hex(&format!("sha256:{}", "a".repeat(64))).is_ok());
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}/x", "a".repeat(62)),
        ] {
            assert!(sha256_hex(&bad).is_err(), "{bad}");
        }
    }
}
