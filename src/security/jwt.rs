use std::collections::HashSet;

use anyhow::{bail, Context};
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::AuthSettings;
use crate::domain::Symbol;

/// The claims tickstream reads from a viewer token.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Entitlements: the symbols this viewer may see. Absent = every symbol.
    #[serde(default)]
    pub symbols: Option<Vec<String>>,
}

impl Claims {
    /// The entitled symbols, or `None` for "all". Malformed names entitle nothing.
    pub fn entitlements(&self) -> Option<HashSet<Symbol>> {
        self.symbols
            .as_ref()
            .map(|names| names.iter().filter_map(|n| Symbol::parse(n).ok()).collect())
    }
}

/// Verifies viewer tokens: HS256 with a shared secret, or RS256/ES256 with a public key.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<JwtVerifier> {
        let secret = settings.jwt_secret.expose();
        let audience = settings.audience.as_str();
        if !secret.is_empty() {
            return Ok(JwtVerifier::new(
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
                audience,
            ));
        }
        let path = &settings.jwt_public_key_file;
        if path.is_empty() {
            bail!("auth.mode = jwt needs TICKSTREAM__AUTH__JWT_SECRET or auth.jwt_public_key_file");
        }
        let pem = std::fs::read(path)
            .with_context(|| format!("auth.jwt_public_key_file: cannot read {path}"))?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(JwtVerifier::new(key, Algorithm::RS256, audience));
        }
        let key = DecodingKey::from_ec_pem(&pem).with_context(|| {
            format!("auth.jwt_public_key_file: {path} is neither an RSA nor an EC public key")
        })?;
        Ok(JwtVerifier::new(key, Algorithm::ES256, audience))
    }

    fn new(key: DecodingKey, algorithm: Algorithm, audience: &str) -> JwtVerifier {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Identity providers usually set `aud`; check it only when one is configured.
        if audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        }
        // Expiry is enforced to the second; viewers are also closed at `exp`.
        validation.leeway = 0;
        JwtVerifier { key, validation }
    }

    /// The token's claims, if its signature, algorithm and expiry are valid.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn verifier(secret: &str) -> JwtVerifier {
        verifier_for(secret, "")
    }

    fn verifier_for(secret: &str, audience: &str) -> JwtVerifier {
        JwtVerifier::from_settings(&AuthSettings {
            mode: crate::config::AuthMode::Jwt,
            jwt_secret: Secret::new(secret),
            jwt_public_key_file: String::new(),
            audience: audience.into(),
        })
        .unwrap()
    }

    #[test]
    fn public_key_files_verify_es256_tokens() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let dir = std::env::temp_dir().join(format!("tickstream-es256-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let public = dir.join("public.pem");
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        let verifier = JwtVerifier::from_settings(&AuthSettings {
            mode: crate::config::AuthMode::Jwt,
            jwt_secret: Secret::default(),
            jwt_public_key_file: public.display().to_string(),
            audience: String::new(),
        })
        .unwrap();
        let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let claims = json!({"sub":"es","exp":in_an_hour()});
        let good = encode(
            &Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &signing,
        )
        .unwrap();
        assert_eq!(verifier.verify(&good).unwrap().sub, "es");
        // An HS256 token cannot pass as ES256 (algorithm confusion).
        assert!(verifier.verify(&token("s3cret", claims)).is_err());
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let forged = encode(
            &Header::new(jsonwebtoken::Algorithm::ES256),
            &json!({"sub":"es","exp":in_an_hour()}),
            &EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert!(verifier.verify(&forged).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn public_key_files_verify_rs256_tokens() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let verifier = JwtVerifier::from_settings(&AuthSettings {
            mode: crate::config::AuthMode::Jwt,
            jwt_secret: Secret::default(),
            jwt_public_key_file: format!("{fixtures}/rs256-test-public.pem"),
            audience: String::new(),
        })
        .unwrap();
        let sign = |private: &str, algorithm| {
            let pem = std::fs::read(format!("{fixtures}/{private}")).unwrap();
            encode(
                &Header::new(algorithm),
                &json!({"sub":"rs","exp":in_an_hour(),"symbols":["AAPL"]}),
                &EncodingKey::from_rsa_pem(&pem).unwrap(),
            )
            .unwrap()
        };
        let good = sign("rs256-test-private.pem", jsonwebtoken::Algorithm::RS256);
        let claims = verifier.verify(&good).unwrap();
        assert_eq!(claims.sub, "rs");
        // Signed by another key, or with another algorithm: refused.
        let forged = sign("rs256-other-private.pem", jsonwebtoken::Algorithm::RS256);
        assert!(verifier.verify(&forged).is_err());
        let other_alg = sign("rs256-test-private.pem", jsonwebtoken::Algorithm::RS512);
        assert!(verifier.verify(&other_alg).is_err());
        assert!(verifier
            .verify(&token("s3cret", json!({"sub":"rs","exp":in_an_hour()})))
            .is_err());
    }

    #[test]
    fn audience_is_checked_only_when_configured() {
        let with_aud = token(
            "s3cret",
            json!({"sub":"x","exp":in_an_hour(),"aud":"tickstream"}),
        );
        assert!(
            verifier("s3cret").verify(&with_aud).is_ok(),
            "aud present, none configured"
        );
        assert!(verifier_for("s3cret", "tickstream")
            .verify(&with_aud)
            .is_ok());
        assert!(verifier_for("s3cret", "other").verify(&with_aud).is_err());
        let without = token("s3cret", json!({"sub":"x","exp":in_an_hour()}));
        assert!(verifier_for("s3cret", "tickstream")
            .verify(&without)
            .is_err());
    }

    fn token(secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn in_an_hour() -> i64 {
        chrono::Utc::now().timestamp() + 3600
    }

    #[test]
    fn accepts_valid_tokens_with_entitlements() {
        let v = verifier("s3cret");
        let claims = v
            .verify(&token(
                "s3cret",
                json!({"sub":"ann","exp":in_an_hour(),"symbols":["aapl","MSFT","bad$"]}),
            ))
            .unwrap();
        assert_eq!(claims.sub, "ann");
        let entitled = claims.entitlements().unwrap();
        assert!(entitled.contains(&Symbol::parse("AAPL").unwrap()) && entitled.len() == 2);
        let all = v
            .verify(&token("s3cret", json!({"sub":"bob","exp":in_an_hour()})))
            .unwrap();
        assert!(all.entitlements().is_none());
    }

    #[test]
    fn refuses_forged_expired_and_incomplete_tokens() {
        let v = verifier("s3cret");
        assert!(v
            .verify(&token("other", json!({"sub":"x","exp":in_an_hour()})))
            .is_err());
        assert!(v
            .verify(&token(
                "s3cret",
                json!({"sub":"x","exp":chrono::Utc::now().timestamp() - 5})
            ))
            .is_err());
        assert!(v
            .verify(&token("s3cret", json!({"exp":in_an_hour()})))
            .is_err());
        assert!(v.verify(&token("s3cret", json!({"sub":"x"}))).is_err());
        assert!(v.verify("not.a.token").is_err());
        // "alg": "none" and other algorithms are refused.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJzdWIiOiJ4IiwiZXhwIjo0MTAyNDQ0ODAwfQ"
        );
        assert!(v.verify(&none).is_err());
    }
}
