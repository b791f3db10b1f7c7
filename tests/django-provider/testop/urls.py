from django.contrib.auth import views as auth_views
from django.urls import include, path
from oauth2_provider.urls import metadata_urlpatterns

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    # django-oauth-toolkit's docs: a deployment under a prefix also mounts
    # the RFC 8414 metadata at the server root, where strict RFC 8414
    # clients look (/.well-known/oauth-authorization-server/o).
    path("", include((metadata_urlpatterns, "oauth2_metadata"))),
]
