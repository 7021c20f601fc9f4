"""``rbac``: which roles may use which models, and how many tokens per request.

The caller's role comes from their gateway key (``kt keys create --role``). Identity
headers (``X-User-ID``, ``X-User-Role``) count only when ``trust_identity_headers`` is on,
for deployments behind a proxy that authenticates users and sets those headers itself;
otherwise any client could claim any role. Without a key, ``default_role`` applies if set.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from keeptrusts.context import RequestContext
from keeptrusts.policies.base import ALLOW, Policy, PolicyConfig, PolicyEnv, Verdict
from keeptrusts.policies.registry import register

ROLE_HEADERS = ("x-user-role", "x-role")


class RoleConfig(PolicyConfig):
    allowed_models: list[str] = Field(default_factory=lambda: ["*"])
    max_tokens_per_request: int | None = Field(default=None, ge=1)
    description: str = ""


class RbacConfig(PolicyConfig):
    roles: dict[str, RoleConfig] = Field(default_factory=dict)
    default_role: str | None = None
    trust_identity_headers: bool = False
    # Headers that must be present (only meaningful with trusted headers or a proxy).
    deny_if_missing: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_role_exists(self) -> RbacConfig:
        if self.default_role is not None and self.default_role not in self.roles:
            raise ValueError(f"default_role {self.default_role!r} is not one of rbac.roles")
        return self


def _deny(message: str, code: str) -> Verdict:
    return Verdict.block(message, reason_code=code, code=code, status=403)


@register("rbac")
class Rbac(Policy):
    Config = RbacConfig
    phases = frozenset({"input"})

    def __init__(self, config: RbacConfig, env: PolicyEnv) -> None:
        super().__init__(config, env)
        self.config: RbacConfig = config

    def _role(self, ctx: RequestContext) -> str | None:
        ident = ctx.identity
        if ident.role is None and self.config.trust_identity_headers:
            headers = {k.lower(): v for k, v in ctx.headers.items()}
            ident.user_id = headers.get("x-user-id")
            ident.org_id = headers.get("x-org-id")
            for h in ROLE_HEADERS:
                if headers.get(h):
                    ident.role = headers[h]
                    ident.source = "header"
                    break
        if ident.role is None and self.config.default_role is not None:
            ident.role = self.config.default_role
            ident.source = "default"
        return ident.role

    async def on_request(self, ctx: RequestContext) -> Verdict:
        present = {k.lower() for k in ctx.headers}
        missing = [h for h in self.config.deny_if_missing if h.lower() not in present]
        if missing:
            return _deny(
                f"Missing required identity header(s): {', '.join(missing)}", "missing_identity"
            )
        role = self._role(ctx)
        if role is None:
            return _deny(
                "No identity: send 'Authorization: Bearer <gateway key>' (create one with "
                "`kt keys create --role ROLE`), or set rbac.default_role in the policy config.",
                "missing_identity",
            )
        rules = self.config.roles.get(role)
        if rules is None:
            return _deny(
                f"Role {role!r} is not defined in rbac.roles (defined: "
                f"{', '.join(self.config.roles) or 'none'}).",
                "rbac_denied",
            )
        verdict = self._check_model(ctx, role, rules)
        if verdict is not None:
            return verdict
        return self._check_tokens(ctx, role, rules)

    @staticmethod
    def _check_model(ctx: RequestContext, role: str, rules: RoleConfig) -> Verdict | None:
        allowed = set(rules.allowed_models)
        if "*" in allowed or ctx.model in allowed:
            return None
        route = ctx.route
        if route is not None:
            ok = tuple(t for t in route.targets if t.id in allowed or t.model in allowed)
            if ok:
                # Narrow a group to the targets this role may reach.
                ctx.route = type(route)(route.model, ok)
                return None
        return _deny(
            f"Role {role!r} may not use model {ctx.model!r}. Allowed models: "
            f"{', '.join(rules.allowed_models)}. Use an allowed model or a key whose role "
            "permits this one.",
            "rbac_denied",
        )

    @staticmethod
    def _check_tokens(ctx: RequestContext, role: str, rules: RoleConfig) -> Verdict:
        cap = rules.max_tokens_per_request
        if cap is None:
            return ALLOW
        body = ctx.body
        field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        asked = body.get(field)
        if asked is None:
            body["max_tokens"] = cap
            return ALLOW
        if asked > cap:
            return _deny(
                f"Role {role!r} may request at most {cap} tokens per request; this request "
                f"asked for {asked} ({field}). Lower {field} or use a role with a higher cap.",
                "rbac_denied",
            )
        return ALLOW
