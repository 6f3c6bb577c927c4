// A throw-away self-signed certificate for TLS tests (127.0.0.1 and
// localhost as subject alternative names), written as PEM files into a
// fresh temporary directory. Header-only, for tests.
#ifndef SAFEROUTE_CASCADE_TESTING_SELF_SIGNED_CERT_H_
#define SAFEROUTE_CASCADE_TESTING_SELF_SIGNED_CERT_H_

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "util/status.h"

namespace saferoute::fakes {

struct SelfSignedCert {
  std::string dir;
  std::string cert_file;  // PEM certificate (also the CA to trust)
  std::string key_file;   // PEM private key (unencrypted)

  ~SelfSignedCert() {
    std::error_code ignored;
    if (!dir.empty()) std::filesystem::remove_all(dir, ignored);
  }
};

inline void AddExtension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  SR_CHECK(ext != nullptr);
  SR_CHECK(X509_add_ext(cert, ext, -1) == 1);
  X509_EXTENSION_free(ext);
}

// Clients verify the subject alternative names; `common_name` is for show.
inline std::unique_ptr<SelfSignedCert> MakeSelfSignedCert(
    const std::string& common_name = "saferoute-test") {
  auto out = std::make_unique<SelfSignedCert>();
  std::string pattern = (std::filesystem::temp_directory_path() / "saferoute-tls-XXXXXX").string();
  SR_CHECK(::mkdtemp(pattern.data()) != nullptr);
  out->dir = pattern;
  out->cert_file = out->dir + "/cert.pem";
  out->key_file = out->dir + "/key.pem";

  EVP_PKEY* key = EVP_EC_gen("P-256");
  SR_CHECK(key != nullptr);
  X509* cert = X509_new();
  SR_CHECK(X509_set_version(cert, 2) == 1);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  SR_CHECK(X509_set_pubkey(cert, key) == 1);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  SR_CHECK(X509_set_issuer_name(cert, name) == 1);
  AddExtension(cert, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  AddExtension(cert, NID_basic_constraints, "critical,CA:TRUE");
  SR_CHECK(X509_sign(cert, key, EVP_sha256()) > 0);

  FILE* f = std::fopen(out->cert_file.c_str(), "w");
  SR_CHECK(f != nullptr && PEM_write_X509(f, cert) == 1);
  std::fclose(f);
  f = std::fopen(out->key_file.c_str(), "w");
  SR_CHECK(f != nullptr &&
           PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

}  // namespace saferoute::fakes

#endif  // SAFEROUTE_CASCADE_TESTING_SELF_SIGNED_CERT_H_
