"""The OpenID Connect provider: accounts, authentication, SSO sessions, clients, grants
(on Authlib), tokens, consent, logout and claims. Plain Python; `web/` adapts HTTP."""
