# Ce que toutes les pages partagent : le cadre, la navigation, la connexion et les pages d’erreur.

skip-to-content = Aller au contenu
language = Langue
nav-main = Principale
nav-webhooks = Webhooks
nav-scripts = Scripts
nav-api = API
nav-sign-out = Se déconnecter
back-to-webhooks = Retour aux webhooks

sign-in-title = Connexion
sign-in-hint-beside-database = Saisissez un jeton d’API d’administration de ce herald : <code>{ $file }</code> à côté de la base de données, <code>HERALD_API_TOKEN</code> ou une entrée <code>[[api_tokens]]</code> avec le rôle admin.
sign-in-hint-working-directory = Saisissez un jeton d’API d’administration de ce herald : <code>{ $file }</code> dans le répertoire de travail de herald, <code>HERALD_API_TOKEN</code> ou une entrée <code>[[api_tokens]]</code> avec le rôle admin.
sign-in-token = Jeton d’API
sign-in-button = Se connecter
sign-in-subscribe-token = Ce jeton ne peut utiliser que les terminaux REST hooks. Connectez-vous avec un jeton d’administration.
sign-in-enter-token = Saisissez un jeton d’API.
sign-in-invalid-token = Ce jeton n’est pas valide.

error-refused = Refusé
error-cross-site-form = Ce formulaire a été envoyé depuis un autre site.
error-signed-out = Déconnecté
error-signed-out-message = Votre session a pris fin ; reconnectez-vous.
error-not-found = Introuvable
error-no-such-file = Fichier introuvable.
error-no-such-page = Page introuvable.
error-busy = Occupé
error-went-wrong = Une erreur s’est produite
error-not-possible = Impossible
error-unreadable-form = Formulaire illisible
error-sign-in-form-too-large = Le formulaire de connexion était trop volumineux.
error-form-not-utf8 = Le formulaire contient du texte qui n’est pas en UTF-8 ; rien n’a été enregistré. Saisissez-le de nouveau ou collez-le depuis une autre source.
error-form-expired = Formulaire expiré
error-form-expired-message = Ce formulaire n’appartient pas à votre session actuelle. Rechargez la page et réessayez.
error-too-many-tries = Trop de tentatives
error-too-many-tries-message = Trop de jetons erronés depuis cette adresse. Réessayez dans { $seconds ->
        [one] { $seconds } seconde
       *[other] { $seconds } secondes
    }.

# Le script des pages.
js-saving = Enregistrement…
js-saved = Enregistré
js-not-saved = Non enregistré :
js-deliveries-failed = Impossible de charger les livraisons :
js-more-failed = Échec du chargement d’autres livraisons ; cliquez pour réessayer :
js-delivery-failed = Impossible de charger cette livraison :
js-copied = Copié
js-select-and-copy = Sélectionnez et copiez

# Mots utilisés sur de nombreuses pages.
optional = (facultatif)
none = aucun

# Le résultat d’une tentative et le statut d’un événement.
outcome-success = Réussie
outcome-http-error = Erreur HTTP
outcome-timeout = Délai dépassé
outcome-connection-error = Échec de la connexion
outcome-refused = Cible refusée
outcome-failed = Échec
status-pending = En attente
status-delivering = En cours de livraison
status-delivered = Livré
status-retrying = Nouvelle tentative
status-failed = En échec
status-discarded = Abandonné
status-unknown = Inconnu

scope-subscription-to = Abonnement REST hooks à { $trigger }
scope-subscription = Abonnement REST hooks

# Le statut d’un rattrapage.
backfill-status-preparing = en préparation
backfill-status-running = en cours
backfill-status-done = terminé
backfill-status-failed = en échec
backfill-status-cancelled = annulé

# Pourquoi un webhook est désactivé.
disabled-by-administrator = désactivé par un administrateur
disabled-gone = le terminal a répondu 410 Gone
disabled-failing = toutes les tentatives ont échoué depuis le { $since } ({ $count ->
        [one] { $count } tentative
       *[other] { $count } tentatives
    })
