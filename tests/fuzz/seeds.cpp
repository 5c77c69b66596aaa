// SPDX-License-Identifier: LGPL-2.1-or-later
// Writes the seed inputs of one fuzz target into a folder: valid inputs of each kind, made here (MP4s built
// byte by byte, multipart bodies, Range headers) or by sluice's own writers (playlists, the MPD), and the
// descriptions in pipelines/. Nothing binary is committed: the fuzz suite runs this before each target.
// usage: fuzz-seeds TARGET DIR
#include "../support/mp4_boxes.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/paths.h"
#include "media/bmff.h"
#include "media/dash.h"
#include "media/hls.h"
#include "pipeline/description.h"

#include <glib.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace sluice;

// --- MP4 files built byte by byte (the shapes mp4mux writes with fragment-duration) ----------------------

using sluice::test::mp4::be;
using sluice::test::mp4::box;
using sluice::test::mp4::full;
std::string avc1_entry(int w, int h) {
  std::string e = std::string(6, '\0') + be(1, 2) + std::string(16, '\0') + be(w, 2) + be(h, 2) + be(0x00480000, 4) +
                  be(0x00480000, 4) + be(0, 4) + be(1, 2) + std::string(32, '\0') + be(24, 2) + be(0xffff, 2);
  std::string avcc = be(1, 1) + be(0x64, 1) + be(0, 1) + be(0x1f, 1) + be(0xff, 1) + be(0xe0, 1);
  return box("avc1", e + box("avcC", avcc));
}

std::string mp4a_entry(int channels, int rate) {
  std::string e = std::string(6, '\0') + be(1, 2) + std::string(8, '\0') + be(channels, 2) + be(16, 2) + be(0, 4) +
                  be(static_cast<std::uint64_t>(rate) << 16, 4);
  std::uint16_t asc = static_cast<std::uint16_t>((2 << 11) | (3 << 7) | (channels << 3));
  std::string dsi = be(0x05, 1) + be(2, 1) + be(asc, 2);
  std::string dcd =
      be(0x04, 1) + be(13 + dsi.size(), 1) + be(0x40, 1) + be(0x15, 1) + be(0, 3) + be(128000, 4) + be(128000, 4) + dsi;
  std::string esd = be(0x03, 1) + be(3 + dcd.size(), 1) + be(1, 2) + be(0, 1) + dcd;
  return box("mp4a", e + full("esds", 0, 0, esd));
}

std::string moov(const std::string &handler, std::uint32_t timescale, const std::string &entry) {
  std::string tkhd = full("tkhd", 0, 3, be(0, 4) + be(0, 4) + be(1, 4) + std::string(72, '\0'));
  std::string mdhd = full("mdhd", 0, 0, be(0, 4) + be(0, 4) + be(timescale, 4) + be(0, 4) + be(0x55c4, 2) + be(0, 2));
  std::string hdlr = full("hdlr", 0, 0, be(0, 4) + handler + std::string(12, '\0') + "x" + std::string(1, '\0'));
  std::string stbl = box("stbl", full("stsd", 0, 0, be(1, 4) + entry) + full("stts", 0, 0, be(0, 4)));
  std::string trak = box("trak", tkhd + box("mdia", mdhd + hdlr + box("minf", stbl)));
  std::string trex = full("trex", 0, 0, be(1, 4) + be(1, 4) + be(0, 4) + be(0, 4) + be(0, 4));
  return box("moov", full("mvhd", 0, 0, std::string(96, '\0')) + trak + box("mvex", trex));
}

// A moof (tfhd default-base-is-moof, tfdt, trun with per-sample duration, size, flags and composition
// offset, or durations from tfhd) and its mdat: `frames` samples, the first one a keyframe.
std::string fragment(std::uint32_t seq, std::uint64_t decode_time, int frames, std::uint32_t duration,
                     bool per_sample_duration = true, int tfdt_version = 1) {
  std::uint32_t tflags = 0x001 | 0x200 | 0x400 | 0x800 | (per_sample_duration ? 0x100 : 0);
  std::string entries;
  std::uint32_t bytes = 0;
  for (int i = 0; i < frames; ++i) {
    if (per_sample_duration)
      entries += be(duration, 4);
    std::uint32_t flags = i == 0 ? 0x02000000u : 0x01010000u;
    entries += be(40, 4) + be(flags, 4) + be(i % 3 == 1 ? duration : 0, 4);
    bytes += 40;
  }
  std::string tfhd = full("tfhd", 0, 0x020000 | (per_sample_duration ? 0 : 0x08),
                          be(1, 4) + (per_sample_duration ? "" : be(duration, 4)));
  std::string tfdt = tfdt_version ? full("tfdt", 1, 0, be(decode_time, 8)) : full("tfdt", 0, 0, be(decode_time, 4));
  auto build = [&](std::uint32_t data_offset) {
    std::string trun = full("trun", 1, tflags, be(frames, 4) + be(data_offset, 4) + entries);
    return box("moof", full("mfhd", 0, 0, be(seq, 4)) + box("traf", tfhd + tfdt + trun));
  };
  std::string moof = build(0);
  moof = build(static_cast<std::uint32_t>(moof.size() + 8));
  return moof + box("mdat", std::string(bytes, '\x42'));
}

const std::string kFtyp = box("ftyp", "iso6" + be(0, 4) + "iso6cmfc");

std::string video_mp4() {
  return kFtyp + moov("vide", 3000, avc1_entry(640, 360)) + fragment(1, 0, 6, 500) + fragment(2, 3000, 6, 500) +
         fragment(3, 6000, 2, 500);
}

std::string audio_mp4() {
  return kFtyp + moov("soun", 48000, mp4a_entry(2, 48000)) + fragment(1, 0, 4, 1024) + fragment(2, 4096, 4, 1024);
}

// --- each target's seeds ---------------------------------------------------------------------------------

using Seeds = std::vector<std::string>;

Seeds multipart() {
  const std::string ct = "multipart/form-data; boundary=----sluiceSeed7MA4YWxk\n";
  const std::string d = "------sluiceSeed7MA4YWxk";
  Seeds s;
  s.push_back(
      ct + d + "\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nLecture 1\r\n" + d +
      "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.mp4\"\r\nContent-Type: video/mp4\r\n\r\n" +
      video_mp4().substr(0, 120) + "\r\n" + d + "--\r\n");
  s.push_back(
      "multipart/form-data; boundary=\"quoted boundary:1\"; charset=utf-8\npreamble\r\n--quoted boundary:1  \r\n"
      "Content-Disposition: form-data;\r\n name=\"ladder\"\r\n\r\n360p,720p\r\n--quoted boundary:1\r\n"
      "content-disposition: form-data; name=\"file\"; filename=\"C:\\dir\\a \\\"b\\\".mp4\"\r\n\r\n"
      "\r\n--quoted boundary:1x\r\n--quoted boundary:1--\r\nepilogue");
  s.push_back("Multipart/Form-Data;boundary=b\n--b\r\nContent-Disposition: form-data; name=pipeline\r\n\r\ncmaf\r\n"
              "--b\r\nContent-Disposition: form-data; name=priority\r\n\r\n5\r\n--b--");
  s.push_back("multipart/form-data; boundary=x\n--x--\r\n");
  s.push_back("text/plain\nhello");
  return s;
}

Seeds bmff() {
  const std::string head = kFtyp + moov("vide", 1000, avc1_entry(2, 2));
  std::string large = video_mp4();
  // The first fragment's mdat with a 64-bit size (size 1, then the largesize).
  std::string frag = fragment(1, 0, 3, 100);
  std::size_t mdat = frag.find("mdat") - 4;
  std::string payload = frag.substr(mdat + 8);
  std::string large_mdat = be(1, 4) + "mdat" + be(payload.size() + 16, 8) + payload;
  return {
      video_mp4(),
      audio_mp4(),
      head + fragment(1, 0, 5, 200, false) + fragment(2, 1000, 5, 200, false, 0),
      head + frag.substr(0, mdat) + large_mdat,
      head + box("free", "xxxx") + fragment(1, 0, 2, 100) + box("mfra", std::string(8, '\0')),
      kFtyp + moov("vide", 3000, avc1_entry(320, 240)),                                         // not fragmented
      kFtyp + box("mdat", "0123456789"),                                                        // no movie header
      video_mp4().substr(0, video_mp4().size() / 2),                                            // cut short
      kFtyp + box("moov", box("trak", box("mdia", box("minf", box("stbl", box("stsd", "")))))), // nested
  };
}

std::vector<pipeline::Description> descriptions() {
  return pipeline::list_descriptions();
}

Seeds description() {
  Seeds s;
  for (const auto &d : descriptions())
    s.push_back(fs::read_file(d.path));
  s.push_back(R"({"name": "tiny", "output": "poster",
  "parameters": {"max_width": {"type": "integer", "default": 320, "min": 16, "max": 640},
                 "max_height": {"type": "integer", "default": 180, "min": 16, "max": 360},
                 "label": {"type": "string", "default": "x"}, "ratio": {"type": "number", "default": 0.5},
                 "mode": {"type": "enum", "values": ["a", "b-c"], "default": "a"}, "on": {"type": "boolean", "default": true}},
  "fragments": {"source": "filesrc location=\"{input}\" ! decodebin name=dec",
                "video": "dec. ! videoconvert ! videoscale ! video/x-raw,width={width},height={height}",
                "sink": "jpegenc ! filesink location=\"{out}/{label}.jpg\""}})");
  return s;
}

Seeds params() {
  Seeds s;
  for (const auto &d : descriptions()) {
    std::string defaults, bounds;
    for (const auto &p : d.params) {
      defaults += p.name + "=" + p.default_value + "\n";
      if (p.min)
        bounds += p.name + "=" + std::to_string(static_cast<long long>(*p.min)) + "\n";
      if (p.max)
        bounds += p.name + "=" + std::to_string(static_cast<long long>(*p.max)) + "\n";
      for (const auto &v : p.values)
        bounds += p.name + "=" + v + "\n";
    }
    s.push_back(defaults);
    s.push_back(bounds);
  }
  s.push_back("segment_seconds=6\npreset=slow\naudio_bitrate=96\nscaler=bilinear\n");
  s.push_back("segment_seconds=4.0\nqueue_buffers=+3\nunknown=1\n=x\nno equals sign\n");
  return s;
}

Seeds json() {
  return {
      R"({"pipeline": "cmaf", "encoder": "x264", "ladder": "360p,720p", "priority": 5,
 "params": {"segment_seconds": 4, "preset": "veryfast", "audio_bitrate": 96.5, "flag": true, "none": null}})",
      R"({"pipeline": "poster"})",
      R"({"params": {"start_seconds": -1, "label": "a\"b\\c\u00e9\ud83d\ude00"}, "priority": -1000})",
      R"([[[[[[[["deep"]]]]]]]])",
      R"({"a": [1, 2.5e3, -0, true, false, null, "x", {}, []]})",
      "{\"priority\": 18446744073709551616}",
      // json-glib also reads C comments and single-quoted strings.
      R"({"pipeline": /* the default */ "hls", 'ladder': '360p'})",
  };
}

Seeds headers() {
  return {"bytes=0-99",
          "bytes=100-",
          "bytes=-500",
          "bytes = 5 - 9",
          "BYTES=0-0",
          "bytes=10-5",
          "bytes=0-1,5-6",
          "bytes=99999999999999999999-",
          "items=0-1",
          "hls/720p%5f00001.ts",
          "cmaf/720p/seg_00001.m4s",
          "poster/poster.jpg",
          "a/%2e%2e/b",
          "%00",
          "360p,720p",
          "360p,540p:2000",
          "480p:1400k, 1080p",
          "2160p,1440p,1080p,720p,480p,360p,240p,144p:100"};
}

Seeds playlist() {
  Seeds s;
  media::MediaPlaylist ts;
  ts.target_duration = 4;
  ts.segments = {{"360p_00000.ts", 4.0, -1}, {"360p_00001.ts", 4.0, -1}, {"360p_00002.ts", 1.966667, -1}};
  s.push_back(media::write_media_playlist(ts, "VOD"));
  s.push_back(media::write_media_playlist(ts, "EVENT"));
  media::MediaPlaylist fmp4 = ts;
  fmp4.map_uri = "init.mp4";
  fmp4.media_sequence = 1;
  fmp4.segments = {{"seg_00001.m4s", 4.0, -1}, {"seg_00002.m4s", 2.5, -1}};
  s.push_back(media::write_media_playlist(fmp4, ""));
  // As hlssink2 writes it, before sluice rewrites it.
  s.push_back("#EXTM3U\r\n#EXT-X-VERSION:3\r\n#EXT-X-ALLOW-CACHE:NO\r\n#EXT-X-MEDIA-SEQUENCE:0\r\n"
              "#EXT-X-TARGETDURATION:4\r\n\r\n#EXTINF:4,\r\n720p_00000.ts\r\n#EXTINF:3.5,\r\n720p_00001.ts\r\n"
              "#EXT-X-ENDLIST\r\n");
  media::FragmentedMp4 v = media::parse_fragmented_mp4(video_mp4());
  media::FragmentedMp4 a = media::parse_fragmented_mp4(audio_mp4());
  s.push_back(media::write_mpd(
      {{"video", {{"360p", &v, 800000, "30"}}, true, ""}, {"audio", {{"audio", &a, 128000, ""}}, true, "en"}}, 2.0,
      2.0));
  return s;
}

// --- bearer tokens and keys ---------------------------------------------------------------------------------

std::string base64url(const std::string &bytes) {
  gchar *b64 = g_base64_encode(reinterpret_cast<const guchar *>(bytes.data()), bytes.size());
  std::string s = b64;
  g_free(b64);
  while (!s.empty() && s.back() == '=')
    s.pop_back();
  for (char &c : s)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  return s;
}

// header.payload.signature with HMAC-SHA256 over the first two, as tests/fuzz/fuzz_jwt.cpp's secret signs them.
std::string hs256_token(const std::string &header, const std::string &payload, const std::string &secret) {
  std::string signed_part = base64url(header) + "." + base64url(payload);
  GHmac *hmac = g_hmac_new(G_CHECKSUM_SHA256, reinterpret_cast<const guchar *>(secret.data()), secret.size());
  g_hmac_update(hmac, reinterpret_cast<const guchar *>(signed_part.data()), static_cast<gssize>(signed_part.size()));
  guint8 digest[32];
  gsize len = sizeof digest;
  g_hmac_get_digest(hmac, digest, &len);
  g_hmac_unref(hmac);
  return signed_part + "." + base64url(std::string(reinterpret_cast<const char *>(digest), len));
}

std::string bn_param(EVP_PKEY *key, const char *name) {
  BIGNUM *bn = nullptr;
  if (!EVP_PKEY_get_bn_param(key, name, &bn))
    throw Error("fuzz-seeds: no key parameter " + std::string(name));
  std::string bytes(static_cast<std::size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char *>(bytes.data()));
  BN_free(bn);
  return base64url(bytes);
}

std::string pem(EVP_PKEY *key) {
  BIO *bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char *data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<std::size_t>(len));
  BIO_free(bio);
  return s;
}

Seeds jwt() {
  const std::string secret = "sluice-fuzz-secret";
  const std::string claims = R"({"sub":"fuzz","iss":"https://issuer.example","aud":"sluice","exp":4102444800,)"
                             R"("nbf":1600000000,"scope":"read upload"})";
  Seeds s = {
      hs256_token(R"({"alg":"HS256","typ":"JWT"})", claims, secret),
      hs256_token(R"({"alg":"HS256","typ":"JWT","kid":"k1"})",
                  R"({"sub":"x","iss":"https://issuer.example","aud":["other","sluice"],"exp":1600000000})", secret),
      base64url(R"({"alg":"none"})") + "." + base64url(claims) + ".",
      hs256_token(R"({"alg":"RS256","kid":"k1"})", claims, secret),
  };
  // A JWKS document and PEM keys, made here (a fresh key each run: only their form matters).
  EVP_PKEY *ec = EVP_EC_gen("P-256");
  EVP_PKEY *rsa = EVP_RSA_gen(2048);
  if (!ec || !rsa)
    throw Error("fuzz-seeds: cannot make keys");
  s.push_back(R"({"keys":[{"kty":"EC","crv":"P-256","kid":"e1","use":"sig","x":")" +
              bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_X) + R"(","y":")" + bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_Y) +
              R"("},{"kty":"RSA","kid":"r1","alg":"RS256","n":")" + bn_param(rsa, OSSL_PKEY_PARAM_RSA_N) +
              R"(","e":")" + bn_param(rsa, OSSL_PKEY_PARAM_RSA_E) + R"("},{"kty":"oct","k":"c2VjcmV0"}]})");
  s.push_back(pem(ec));
  s.push_back(pem(rsa));
  EVP_PKEY_free(ec);
  EVP_PKEY_free(rsa);
  return s;
}

Seeds fast_head() {
  const std::string seg = "/videos/0123456789abcdef/hls/240p_00000.ts";
  return {
      "GET " + seg + "?v=abc HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nRange: bytes=0-99\r\n\r\n",
      "HEAD " + seg + " HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n",
      "GET " + seg + " HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\nX-Request-Id: r-1\r\n\r\n",
      "GET " + seg + " HTTP/1.1\r\nHost: a\n\nGET " + seg + " HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET " + seg + " HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
      "GET /videos/x/../y HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET " + seg + " HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
  };
}

const std::map<std::string, std::function<Seeds()>> kTargets = {
    {"multipart", multipart}, {"bmff", bmff}, {"description", description},
    {"params", params},       {"json", json}, {"headers", headers},
    {"playlist", playlist},   {"jwt", jwt},   {"fast_head", fast_head},
};

} // namespace

int main(int argc, char **argv) {
  if (argc != 3 || !kTargets.count(argv[1])) {
    std::fprintf(stderr, "usage: fuzz-seeds TARGET DIR (targets:");
    for (const auto &[name, fn] : kTargets)
      std::fprintf(stderr, " %s", name.c_str());
    std::fprintf(stderr, ")\n");
    return 2;
  }
  try {
    Seeds seeds = kTargets.at(argv[1])();
    fs::make_dirs(argv[2]);
    for (std::size_t i = 0; i < seeds.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "seed-%03zu", i + 1);
      fs::write_atomic(fs::join(argv[2], name), seeds[i]);
    }
  } catch (const Error &e) {
    std::fprintf(stderr, "fuzz-seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
