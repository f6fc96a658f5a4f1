"""Self-registration (实名注册) and password reset pages. The answers never reveal whether
an ID number or phone number is known (ASVS 6.3.8)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from idp.logout import end_all_sessions
from idp.registration import DevelopmentSms, PhoneFlows, Registry
from kit.errors import TongbanError
from web.browser import Browser, see_other
from web.http import form_pairs, unit_of_work
from web.runtime import Runtime

router = APIRouter(include_in_schema=False)
log = logging.getLogger("tongban.register")


def _flows(request: Request, ctx: Any) -> PhoneFlows:
    runtime: Runtime = request.app.state.runtime
    pii = runtime.services.pii
    return PhoneFlows(
        ctx,
        verifier=Registry(ctx.session, pii, runtime.clock),
        sms=DevelopmentSms(pii, runtime.clock),
        throttle=request.app.state.sms_throttle,
    )


def _after_answer(request: Request, step: Callable[[PhoneFlows], None]) -> BackgroundTask:
    """What a flow does depending on who is asking, run once the answer is sent (see
    `PhoneFlows`), in a unit of work of its own."""
    runtime: Runtime = request.app.state.runtime

    def work() -> None:
        try:
            with unit_of_work(runtime, request) as ctx:
                step(_flows(request, ctx))
        except Exception as exc:  # nobody is waiting: the user just gets no code
            # The type only: messages may quote what the user typed.
            log.error("a registration or reset step failed: %s", type(exc).__name__)

    return BackgroundTask(work)


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
    response = b.render(
        request,
        "register.html",
        title=t("register.title"),
        step="verify",
        flow=flow,
        action="/register/verify",
        message=t("register.sent"),
    )
    response.background = _after_answer(
        request,
        lambda flows: flows.continue_registration(
            flow,
            id_number=form.get("id_number", ""),
            name=form.get("name", ""),
            phone=form.get("phone", ""),
        ),
    )
    return response


@router.post("/register/verify")
async def register_finish(request: Request) -> Response:
    def finish(flows: PhoneFlows, ctx: Any, form: dict[str, str]) -> None:
        flows.finish_registration(
            flow=form.get("flow", ""), code=form.get("code", ""), password=form.get("password", "")
        )

    return await _finish(request, finish, kind="register")


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
    response = b.render(
        request,
        "register.html",
        title=t("reset.title"),
        step="verify",
        flow=flow,
        action="/reset/verify",
        message=t("register.sent"),
    )
    response.background = _after_answer(
        request, lambda flows: flows.continue_reset(flow, form.get("username", ""))
    )
    return response


@router.post("/reset/verify")
async def reset_finish(request: Request) -> Response:
    def finish(flows: PhoneFlows, ctx: Any, form: dict[str, str]) -> None:
        account_id = flows.finish_reset(
            flow=form.get("flow", ""), code=form.get("code", ""), password=form.get("password", "")
        )
        end_all_sessions(ctx, account_id, reason="password_reset")

    response = await _finish(request, finish, kind="reset")
    request.app.state.deliveries.kick()
    return response


async def _finish(
    request: Request, finish: Callable[[PhoneFlows, Any, dict[str, str]], None], *, kind: str
) -> Response:
    """The code-and-password step of registration or reset. A failure is answered from
    inside the unit of work, so a wrong code's attempt is committed, not rolled back."""
    runtime, b = _parts(request)
    form = dict(await form_pairs(request))
    t = b.translator(request)
    if not b.csrf_ok(request, form):
        return see_other(f"/{kind}")

    def work() -> TongbanError | None:
        with unit_of_work(runtime, request) as ctx:
            try:
                finish(_flows(request, ctx), ctx, form)
            except TongbanError as exc:
                return exc
            return None

    exc = await run_in_threadpool(work)
    title = t(f"{kind}.title")
    if exc is not None:
        zh = getattr(exc, "zh", None)
        return b.render(
            request,
            "register.html",
            status=400,
            title=title,
            step="verify",
            flow=form.get("flow", ""),
            action=f"/{kind}/verify",
            error=t.pick((zh or exc.description, exc.description)),
        )
    return b.render(
        request,
        "register.html",
        title=title,
        step="done",
        message=t(f"{kind}.done"),
        flow="",
        action="/login",
    )
