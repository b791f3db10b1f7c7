"""The documented way to give django-oauth-toolkit's ID tokens and userinfo
the user's email and name: a validator subclass with the extra claims."""

from oauth2_provider.oauth2_validators import OAuth2Validator


class ClaimsValidator(OAuth2Validator):
    oidc_claim_scope = OAuth2Validator.oidc_claim_scope

    def get_additional_claims(self, request):
        user = request.user
        return {
            "email": user.email,
            "email_verified": True,
            "preferred_username": user.get_username(),
            "name": user.get_full_name() or user.get_username(),
        }
