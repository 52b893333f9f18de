// Ory Kratos courier, `http` SMS channel: the request body for otpgate's POST /v1/messages.
//
// Kratos evaluates this with its template data as the top-level argument `ctx`
// ({recipient, template_type, template_data: {login_code | verification_code | recovery_code,
// to, identity, ...}}). Only the number and the code go to otpgate: the SMS text is the app's
// own template there (WebOTP line, Android app hash), so nothing written here reaches a phone.
//
// Change `app` to the [[apps]] name of your site in otpgate's configuration.
function(ctx) {
  local data = if std.objectHas(ctx, 'template_data') && ctx.template_data != null then ctx.template_data else {},
  local pick(keys) =
    local found = [data[k] for k in keys if std.objectHas(data, k) && data[k] != null];
    if std.length(found) > 0 then found[0] else error 'otpgate: no code in template_data for ' + ctx.template_type,
  to: ctx.recipient,
  code: pick(['login_code', 'verification_code', 'recovery_code', 'registration_code', 'code']),
  app: 'shop',
}
