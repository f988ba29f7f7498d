process EVOSCAN_REPORT {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(windows), path(scores)

    output:
    tuple val(meta), path("${meta.id}/candidates.tsv"), emit: candidates
    tuple val(meta), path("${meta.id}/pairs.tsv.gz"), emit: pairs
    tuple val(meta), path("${meta.id}/candidates.bedpe"), emit: bedpe
    tuple val(meta), path("${meta.id}/summary.txt"), emit: summary
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), topic: versions

    script:
    """
    mkdir -p ${meta.id}
    evoscan report --windows ${windows} --scores ${scores} --outdir ${meta.id} > ${meta.id}/summary.txt
    """

    stub:
    """
    mkdir -p ${meta.id}
    touch ${meta.id}/candidates.tsv ${meta.id}/pairs.tsv.gz ${meta.id}/candidates.bedpe ${meta.id}/summary.txt
    """
}
