"""The province's own timestamp authority (RFC 3161, with RFC 5816's ESSCertIDv2).

`TimestampAuthority.respond` takes a DER `TimeStampReq` and returns a DER
`TimeStampResp`; it never raises for a bad request but answers `rejection` with the
matching `PKIFailureInfo` bit (§2.4.2). Tokens are CMS SignedData (RFC 5652) over a
`TSTInfo`, signed through a `Signer` with the TSA certificate issued under the root
(extendedKeyUsage timeStamping, critical). The HTTP endpoint (`POST /tsa`,
`application/timestamp-query`, RFC 3161 §3.4) lives in `web/`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy.orm import Session

from keys.pki import CertificateChain, Pki
from keys.signer import Signer
from kit.clock import Clock

__all__ = [
    "BASELINE_TSA_POLICY",
    "MAX_REQUEST_BYTES",
    "TimestampAuthority",
    "load_tsa",
]

#: ETSI EN 319 421 §5.2.1 best-practices time-stamp policy (itu-t(0) identified-
#: organization(4) etsi(0) time-stamp-policy(2023) policy-identifiers(1) baseline(1)).
BASELINE_TSA_POLICY = "0.4.0.2023.1.1"
MAX_REQUEST_BYTES = 4096
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


def _rejection(fail: str, text: str) -> bytes:
    status = tsp.PKIStatusInfo(
        {
            "status": "rejection",
            "status_string": [text],
            "fail_info": tsp.PKIFailureInfo({fail}),
        }
    )
    body = bytes(status.dump())
    # asn1crypto's TimeStampResp makes timeStampToken mandatory; RFC 3161 §2.4.2 omits it
    # on rejection, so the SEQUENCE is written by hand.
    return b"\x30" + _der_length(len(body)) + body


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


class TimestampAuthority:
    """Issues RFC 3161 timestamp tokens with the TSA key (a `Signer`: software or HSM)."""

    def __init__(
        self,
        signer: Signer,
        chain: CertificateChain,
        clock: Clock,
        *,
        policy_oid: str = BASELINE_TSA_POLICY,
        serial_source: Callable[[], int] | None = None,
    ) -> None:
        if signer.alg not in ("ES256", "PS256"):
            raise ValueError("the TSA signs with ES256 or PS256")
        self.signer = signer
        self.chain = chain
        self.clock = clock
        self.policy_oid = policy_oid
        self._serial = serial_source or (lambda: secrets.randbits(127))
        der = chain.der()
        self._cert = asn1_x509.Certificate.load(der[0])
        self._cert_der = der[0]

    @property
    def certificate_der(self) -> bytes:
        return self._cert_der

    def respond(self, request_der: bytes) -> bytes:
        """Answer a DER TimeStampReq (RFC 3161 §2.4.1) with a DER TimeStampResp (§2.4.2)."""
        if len(request_der) > MAX_REQUEST_BYTES:
            return _rejection("bad_request", "request too large")
        try:
            req = tsp.TimeStampReq.load(request_der, strict=True)
            version = req["version"].native
            imprint = req["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            req_policy = req["req_policy"].native
            nonce = req["nonce"].native
            cert_req = bool(req["cert_req"].native)
            has_extensions = req["extensions"].native is not None
        except (ValueError, TypeError, KeyError, OverflowError):
            return _rejection("bad_data_format", "the request is not a DER TimeStampReq")
        if version != "v1":
            return _rejection("bad_request", "only version 1 requests")
        if algorithm not in _DIGEST_SIZES:
            return _rejection("bad_alg", "hash algorithm not accepted (SHA-256/384/512)")
        if not isinstance(hashed, bytes) or len(hashed) != _DIGEST_SIZES[algorithm]:
            return _rejection("bad_data_format", "the message imprint has the wrong length")
        if req_policy is not None and req_policy != self.policy_oid:
            return _rejection("unaccepted_policy", "the requested policy is not offered")
        if has_extensions:
            return _rejection("unaccepted_extension", "no request extensions are supported")
        token = self.token(algorithm, hashed, nonce=nonce, include_certificate=cert_req)
        status = tsp.PKIStatusInfo({"status": "granted"})
        return bytes(tsp.TimeStampResp({"status": status, "time_stamp_token": token}).dump())

    def token(
        self,
        hash_algorithm: str,
        hashed_message: bytes,
        *,
        nonce: int | None = None,
        include_certificate: bool = True,
        at: datetime | None = None,
    ) -> cms.ContentInfo:
        """A timestamp token (RFC 3161 §2.4.2) over `hashed_message`."""
        gen_time = (at or self.clock.now()).replace(microsecond=0)
        info: dict[str, object] = {
            "version": "v1",
            "policy": self.policy_oid,
            "message_imprint": tsp.MessageImprint(
                {
                    "hash_algorithm": algos.DigestAlgorithm({"algorithm": hash_algorithm}),
                    "hashed_message": hashed_message,
                }
            ),
            "serial_number": self._serial(),
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
            "tsa": asn1_x509.GeneralName(name="directory_name", value=self._cert.subject),
        }
        if nonce is not None:
            info["nonce"] = nonce
        tst_info_der = tsp.TSTInfo(info).dump()

        ess = tsp.SigningCertificateV2(
            {
                "certs": [
                    {
                        # hashAlgorithm is omitted: SHA-256 is the default (RFC 5035 §4)
                        "cert_hash": hashlib.sha256(self._cert_der).digest(),
                        "issuer_serial": {
                            "issuer": [
                                asn1_x509.GeneralName(
                                    name="directory_name", value=self._cert.issuer
                                )
                            ],
                            "serial_number": self._cert.serial_number,
                        },
                    }
                ]
            }
        )
        attributes = [
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time({"utc_time": gen_time})]}
            ),
            cms.CMSAttribute(
                {"type": "message_digest", "values": [hashlib.sha256(tst_info_der).digest()]}
            ),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}),
        ]
        # DER encodes a SET OF in ascending order of the encodings (X.690 §11.6); verifiers
        # such as OpenSSL re-encode before checking, so the order must be the DER one.
        attributes.sort(key=lambda a: a.dump())
        signed_attrs = cms.CMSAttributes(attributes)
        raw = self.signer.sign(signed_attrs.dump())
        if self.signer.alg == "ES256":
            signature = encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            )
            signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
        else:
            signature = raw
            signature_algorithm = algos.SignedDigestAlgorithm(
                {
                    "algorithm": "rsassa_pss",
                    "parameters": algos.RSASSAPSSParams(
                        {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "mask_gen_algorithm": {
                                "algorithm": "mgf1",
                                "parameters": {"algorithm": "sha256"},
                            },
                            "salt_length": 32,
                        }
                    ),
                }
            )
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                            {
                                "issuer": self._cert.issuer,
                                "serial_number": self._cert.serial_number,
                            }
                        )
                    }
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": signature_algorithm,
                "signature": signature,
            }
        )
        signed_data: dict[str, object] = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(tst_info_der),
            },
            "signer_infos": [signer_info],
        }
        if include_certificate:
            signed_data["certificates"] = [self._cert]
        return cms.ContentInfo(
            {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
        )


def load_tsa(session: Session, pki: Pki, clock: Clock) -> TimestampAuthority:
    """The province's TSA with its current key and certificate."""
    signer, chain = pki.tsa(session, clock.now())
    return TimestampAuthority(signer, chain, clock)
