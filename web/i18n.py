"""Page texts in zh-CN (default) and English. Chosen by `ui_locales`, then the `tb_lang`
cookie, then zh-CN."""

from __future__ import annotations

LOCALES = ("zh-CN", "en")

TEXT: dict[str, tuple[str, str]] = {
    "brand": ("通办 · 统一身份认证", "Tongban · Unified identity"),
    "login.title": ("登录", "Log in"),
    "login.for": ("登录后将返回：", "After logging in you return to:"),
    "login.username": ("身份证号码或手机号", "ID number or mobile number"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Log in"),
    "login.register": ("没有账号？实名注册", "No account? Register"),
    "login.reset": ("忘记密码", "Forgot password"),
    "otp.title": ("动态验证码", "One-time code"),
    "otp.help": (
        "请输入身份验证器应用中的6位数字，或一个恢复码。",
        "Enter the 6-digit code from your authenticator app, or a recovery code.",
    ),
    "otp.code": ("验证码", "Code"),
    "otp.submit": ("验证", "Verify"),
    "consent.title": ("授权确认", "Allow access"),
    "consent.intro": ("以下政务系统请求访问您的信息：", "This government system asks to:"),
    "consent.purpose": ("法定职责依据：", "Statutory purpose:"),
    "consent.allow": ("同意", "Allow"),
    "consent.deny": ("拒绝", "Deny"),
    "consent.note": (
        "您可以随时在“我的账号”中撤销授权。",
        "You can withdraw this any time under “My account”.",
    ),
    "act_for.title": ("选择办事身份", "Whom do you act for?"),
    "act_for.intro": (
        "您是以下企业的经办人。请选择本次登录代表谁办理业务：",
        "You are an agent of the enterprises below. Choose whom this login acts for:",
    ),
    "act_for.self": ("以个人身份办理", "Myself, as a citizen"),
    "act_for.uscc": ("统一社会信用代码", "Credit code"),
    "act_for.note": (
        "所选身份适用于本次登录的所有政务系统；如需更换，请退出后重新登录。",
        "The choice applies to every department system in this login; log out to change it.",
    ),
    "error.title": ("无法完成请求", "The request cannot be completed"),
    "error.back": ("返回首页", "Back to start"),
    "logout.title": ("退出登录", "Log out"),
    "logout.confirm": (
        "确定要退出统一身份认证吗？所有政务系统都将退出登录。",
        "Log out of Tongban? Every department system will log you out.",
    ),
    "logout.submit": ("退出登录", "Log out"),
    "logged_out.title": ("您已安全退出", "You are logged out"),
    "logged_out.body": (
        "所有政务系统的登录状态已结束。为安全起见，请关闭浏览器。",
        "Every department system has been logged out. Close the browser to be safe.",
    ),
    "account.title": ("我的账号", "My account"),
    "account.profile": ("基本信息", "Profile"),
    "account.name": ("姓名", "Name"),
    "account.id_number": ("公民身份号码", "Citizen ID number"),
    "account.phone": ("手机号", "Mobile number"),
    "account.acr": ("本次登录强度", "This login's assurance"),
    "account.sessions": ("登录设备", "Active sessions"),
    "account.end_all": ("退出所有设备", "Log out everywhere"),
    "account.clients": ("已授权的政务系统", "Authorised department systems"),
    "account.revoke": ("撤销授权", "Revoke"),
    "account.none": ("无", "None"),
    "account.password": ("修改密码", "Change password"),
    "account.current_password": ("当前密码", "Current password"),
    "account.new_password": (
        "新密码（至少8位，建议使用长短语）",
        "New password (8+ characters; a long phrase is best)",
    ),
    "account.save": ("保存", "Save"),
    "account.totp": ("动态验证码（第二因素）", "One-time codes (second factor)"),
    "account.totp_on": ("已启用", "On"),
    "account.totp_off": ("未启用", "Off"),
    "account.totp_enrol": ("启用身份验证器", "Set up an authenticator"),
    "account.totp_scan": (
        "用身份验证器应用扫描二维码，或输入密钥，然后输入6位验证码确认：",
        "Scan the QR code with your authenticator app or type the key, then "
        "confirm with a 6-digit code:",
    ),
    "account.recovery": (
        "恢复码（每个只能使用一次，请妥善保存）：",
        "Recovery codes (each works once; keep them safe):",
    ),
    "account.history": ("登录和授权记录", "Login and consent history"),
    "account.logout": ("退出登录", "Log out"),
    "account.enterprises": ("代理的企业", "Enterprises you act for"),
    "register.title": ("实名注册", "Register"),
    "register.id_number": ("公民身份号码", "Citizen ID number"),
    "register.name": ("姓名", "Name"),
    "register.phone": ("手机号", "Mobile number"),
    "register.submit": ("发送验证码", "Send code"),
    "register.code": ("短信验证码", "SMS code"),
    "register.finish": ("完成注册", "Register"),
    "register.sent": (
        "如信息无误，验证码已发送到您的手机。",
        "If the details are right, a code has been sent to your phone.",
    ),
    "register.done": ("注册成功，请登录。", "Registered. Please log in."),
    "reset.title": ("重置密码", "Reset password"),
    "reset.done": ("密码已重置，请登录。", "Password reset. Please log in."),
    "lang.switch": ("English", "中文"),
    "demo": ("演示省份：仅供演示，非真实数据", "Demo province: for demonstration, not real data"),
}

ACR_TEXT = {
    "urn:tongban:acr:password": ("密码", "Password"),
    "urn:tongban:acr:mfa": ("密码 + 动态验证码", "Password + one-time code"),
}


def pick_locale(ui_locales: str | None, cookie: str | None) -> str:
    for tag in (ui_locales or "").split():
        if tag.lower().startswith("en"):
            return "en"
        if tag.lower().startswith("zh"):
            return "zh-CN"
    if cookie in LOCALES:
        return cookie
    return "zh-CN"


class Translator:
    def __init__(self, locale: str) -> None:
        self.locale = locale
        self._i = 1 if locale == "en" else 0

    def __call__(self, key: str) -> str:
        pair = TEXT.get(key)
        return pair[self._i] if pair else key

    def pick(self, pair: tuple[str, str]) -> str:
        return pair[self._i]

    @property
    def other(self) -> str:
        return "zh-CN" if self.locale == "en" else "en"
