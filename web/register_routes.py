"""Self-registration (实名注册) and password reset pages. The answers never reveal whether
an ID number or phone number is known (ASVS 6.3.8)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from idp.logout import end_all_sessions
from idp.registration import DevelopmentSms, PhoneFlows, Registry
from kit.errors import TongbanError
from web.browser import Browser, see_other
from web.http import form_pairs, unit_of_work
from web.runtime import Runtime

router = APIRouter(include_in_schema=False)


def _flows(request: Request, ctx: Any) -> PhoneFlows:
    runtime: Runtime = request.app.state.runtime
    pii = runtime.services.pii
    return PhoneFlows(
        ctx,
        verifier=Registry(ctx.session, pii, runtime.clock),
        sms=DevelopmentSms(pii, runtime.clock),
        throttle=request.app.state.sms_throttle,
    )


def _parts(request: Request) -> tuple[Runtime, Browser]:
    return request.app.state.runtime, request.app.state.browser


@router.get("/register")
async def register_page(request: Request) -> Response:
    _, b = _parts(request)
    t = b.translator(request)
    return b.render(request, "register.html", title=t("register.title"), step="start", form={})


@router.post("/register")
async def register_start(request: Request) -> Response:
    runtime, b = _parts(request)
    form = dict(await form_pairs(request))
    t = b.translator(request)
    if not b.csrf_ok(request, form):
        return see_other("/register")

    def work() -> str | TongbanError:
        with unit_of_work(runtime, request) as ctx:
            try:
                return _flows(request, ctx).start_registration(
                    id_number=form.get("id_number", ""),
                    name=form.get("name", ""),
                    phone=form.get("phone", ""),
                )
            except TongbanError as exc:  # answered, not raised: quota counts must commit
                return exc

    flow = await run_in_threadpool(work)
    if isinstance(flow, TongbanError):  # a format error in what the user typed, or a quota
        exc = flow
        message = getattr(exc, "zh", None) if t.locale == "zh-CN" else None
        return b.render(
            request,
            "register.html",
            status=exc.status if exc.status == 429 else 400,
            title=t("register.title"),
            step="start",
            form=form,
            error=message or exc.description,
        )
    return b.render(
        request,
        "register.html",
        title=t("register.title"),
        step="verify",
        flow=flow,
        action="/register/verify",
        message=t("register.sent"),
    )


@router.post("/register/verify")
async def register_finish(request: Request) -> Response:
    runtime, b = _parts(request)
    form = dict(await form_pairs(request))
    t = b.translator(request)
    if not b.csrf_ok(request, form):
        return see_other("/register")

    def work() -> TongbanError | None:
        with unit_of_work(runtime, request) as ctx:
            try:
                _flows(request, ctx).finish_registration(
                    flow=form.get("flow", ""),
                    code=form.get("code", ""),
                    password=form.get("password", ""),
                )
            except TongbanError as exc:
                return exc  # answered, not raised: a wrong code's count must be committed
            return None

    exc = await run_in_threadpool(work)
    if exc is not None:
        zh = getattr(exc, "zh", None)
        return b.render(
            request,
            "register.html",
            status=400,
            title=t("register.title"),
            step="verify",
            flow=form.get("flow", ""),
            action="/register/verify",
            error=t.pick((zh or exc.description, exc.description)),
        )
    return b.render(
        request,
        "register.html",
        title=t("register.title"),
        step="done",
        message=t("register.done"),
        flow="",
        action="/login",
    )


@router.get("/reset")
async def reset_page(request: Request) -> Response:
    _, b = _parts(request)
    t = b.translator(request)
    return b.render(request, "register.html", title=t("reset.title"), step="reset")


@router.post("/reset")
async def reset_start(request: Request) -> Response:
    runtime, b = _parts(request)
    form = dict(await form_pairs(request))
    t = b.translator(request)
    if not b.csrf_ok(request, form):
        return see_other("/reset")

    def work() -> str | TongbanError:
        with unit_of_work(runtime, request) as ctx:
            try:
                return _flows(request, ctx).start_reset(form.get("username", ""))
            except TongbanError as exc:  # answered, not raised: quota counts must commit
                return exc

    flow = await run_in_threadpool(work)
    if isinstance(flow, TongbanError):
        return b.render(
            request,
            "register.html",
            status=flow.status,
            title=t("reset.title"),
            step="reset",
            error=t.pick((getattr(flow, "zh", flow.description), flow.description)),
        )
    return b.render(
        request,
        "register.html",
        title=t("reset.title"),
        step="verify",
        flow=flow,
        action="/reset/verify",
        message=t("register.sent"),
    )


@router.post("/reset/verify")
async def reset_finish(request: Request) -> Response:
    runtime, b = _parts(request)
    form = dict(await form_pairs(request))
    t = b.translator(request)
    if not b.csrf_ok(request, form):
        return see_other("/reset")

    def work() -> TongbanError | None:
        with unit_of_work(runtime, request) as ctx:
            try:
                account_id = _flows(request, ctx).finish_reset(
                    flow=form.get("flow", ""),
                    code=form.get("code", ""),
                    password=form.get("password", ""),
                )
            except TongbanError as exc:
                return exc  # answered, not raised: a wrong code's count must be committed
            end_all_sessions(ctx, account_id, reason="password_reset")
            return None

    exc = await run_in_threadpool(work)
    if exc is not None:
        zh = getattr(exc, "zh", None)
        return b.render(
            request,
            "register.html",
            status=400,
            title=t("reset.title"),
            step="verify",
            flow=form.get("flow", ""),
            action="/reset/verify",
            error=t.pick((zh or exc.description, exc.description)),
        )
    request.app.state.deliveries.kick()
    return b.render(
        request,
        "register.html",
        title=t("reset.title"),
        step="done",
        message=t("reset.done"),
        flow="",
        action="/login",
    )
