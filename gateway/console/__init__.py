"""The console: the tenant settings and dashboard pages, served by the gateway at /console.

Server-rendered Jinja2 templates with htmx for partial updates (vendored, no build step, no
CDN). Every page is a client of the gateway's own services, the ones the JSON API's handlers
call, so validation and error messages are the API's own.

    session.py       the signed session cookie and `require_console` (checked every request)
    security.py      the CSRF check of every POST and the security headers (ASGI middleware)
    render.py        `render(request, template, context)`: translations, user, CSRF token
    i18n.py          English and French (i18n/*.json), the page's language, number formats
    routes.py        the console app mounted at /console (and `GET /` → /console/)
    errors.py        API errors, no session, unknown pages: as pages
    form_body.py     reading a posted form
    signin.py        sign in, sign out, the language switch
    hub.py           the channels hub
    channel_page.py  one channel's page: save, switch on/off, test, operator fields
    channel_forms.py each channel's inputs, and a posted form as the API's merge patch
    guides.py        call forwarding per French operator, SMTP presets
    sms_preview.py   segments and billed price of an SMS template
    tenants.py       the operator's tenants list
    dashboard.py     the dashboard (with charts.py and dashboard_view.py)
"""
